-- Smaller routing records: the heavy, shared part of a route's input (the
-- tenant's policies and the region views it read) is stored once per
-- content, keyed by the SHA-256 (hex) of its JSON text; a decision row
-- recorded since this migration names it in `context_hash`, keeps only
-- the request's own fields in `input` and a compact decision in
-- `decision`. Rows recorded before (`context_hash` NULL) keep their whole
-- input and decision and are read as before.

CREATE TABLE routing_contexts (
    hash TEXT PRIMARY KEY,
    input TEXT NOT NULL
);

ALTER TABLE routing_decisions ADD COLUMN context_hash TEXT;
