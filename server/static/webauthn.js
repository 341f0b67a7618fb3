// Passkey ceremonies for the ivan portal: the only script the portal runs.
// A form with data-webauthn="create" (register a passkey) or "get" (sign in, or
// approve an action) and data-options (the server's JSON options) asks the browser
// for a credential when submitted, puts the answer into its hidden "credential"
// field, then submits for real. Everything else in the portal works without scripts.
(function () {
  "use strict";
  function toBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }
  function toB64u(buf) {
    var bytes = new Uint8Array(buf), s = "";
    for (var i = 0; i < bytes.length; i++) { s += String.fromCharCode(bytes[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  async function create(opts) {
    var pk = opts.publicKey;
    pk.challenge = toBuf(pk.challenge);
    pk.user.id = toBuf(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    // Discoverable credentials, so that sign-in needs no user name.
    pk.authenticatorSelection = Object.assign({}, pk.authenticatorSelection,
      { residentKey: "required", requireResidentKey: true, userVerification: "required" });
    var c = await navigator.credentials.create({ publicKey: pk });
    return {
      id: c.id, rawId: toB64u(c.rawId), type: c.type,
      extensions: c.getClientExtensionResults(),
      response: {
        attestationObject: toB64u(c.response.attestationObject),
        clientDataJSON: toB64u(c.response.clientDataJSON)
      }
    };
  }
  async function get(opts) {
    var pk = opts.publicKey;
    pk.challenge = toBuf(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    var c = await navigator.credentials.get({ publicKey: pk });
    return {
      id: c.id, rawId: toB64u(c.rawId), type: c.type,
      extensions: c.getClientExtensionResults(),
      response: {
        authenticatorData: toB64u(c.response.authenticatorData),
        clientDataJSON: toB64u(c.response.clientDataJSON),
        signature: toB64u(c.response.signature),
        userHandle: c.response.userHandle ? toB64u(c.response.userHandle) : null
      }
    };
  }
  document.querySelectorAll("form[data-webauthn]").forEach(function (form) {
    var status = form.querySelector(".webauthn-status");
    if (!window.PublicKeyCredential) {
      if (status) { status.textContent = "This browser cannot use passkeys."; }
      return;
    }
    form.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      if (status) { status.textContent = "Waiting for your passkey…"; }
      try {
        var opts = JSON.parse(form.dataset.options);
        var answer = form.dataset.webauthn === "create" ? await create(opts) : await get(opts);
        form.querySelector("input[name=credential]").value = JSON.stringify(answer);
        form.submit();
      } catch (e) {
        if (status) { status.textContent = "The passkey prompt did not complete (" + e.name + "). Reload the page to try again."; }
      }
    });
  });
})();
