-- Checkpoints also sign the Merkle tree's head as a C2SP tlog-checkpoint signed note
-- (docs/LOG.md, "Signed checkpoints"): origin, tree size and root hash, signed by the
-- same Ed25519 key as the chain-head note in `signature`. NULL on checkpoints
-- signed before the tree existed; those keep verifying by `signature` alone.
-- Twin of the other backend's 0014_checkpoint_notes.sql.
ALTER TABLE log_checkpoints ADD COLUMN signed_note TEXT;
