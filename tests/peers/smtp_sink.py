"""A real SMTP server for the end-to-end tests (aiosmtpd): accepts every message on
127.0.0.1 and writes each one, as received, to DIR/<n>.eml. Prints
"smtp listening on PORT" once it listens, then serves until killed.

Usage: python3 smtp_sink.py DIR
"""
import asyncio
import os
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.directory, f"{self.count:06d}.eml")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content)
        os.rename(tmp, path)
        return "250 OK"


async def main(directory):
    os.makedirs(directory, exist_ok=True)
    handler = Sink(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test"), host="127.0.0.1", port=0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"smtp listening on {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
