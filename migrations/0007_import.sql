-- `cardvault import`: which row of a shop's own storage became which token.
-- One row per (merchant, import job, source row id), written in the same
-- transaction as the token rows it names, so an import killed at any point
-- and run again with the same job id skips exactly the rows already
-- committed: nothing is imported twice and the mapping comes back whole.
-- No card data: the token, the brand, the last 4 digits and the expiry the
-- source row gave (PCI DSS 3.4.1 allows the last four in the clear). Row ids
-- that look like a card number are refused by the importer before they get
-- here. A merged row (its card number was already in the vault, under this
-- merchant, by fingerprint) names the existing token.
CREATE TABLE import_rows (
    merchant_id  text NOT NULL REFERENCES merchants (merchant_id),
    job_id       text NOT NULL CHECK (job_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    row_id       text NOT NULL CHECK (length(row_id) BETWEEN 1 AND 200),
    seq          bigint GENERATED ALWAYS AS IDENTITY,
    token        text NOT NULL CHECK (token ~ '^tok_[0-9A-Za-z]{22}$'),
    brand        text NOT NULL,
    last4        text NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month    smallint NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year     smallint NOT NULL,
    merged       boolean NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, job_id, row_id)
);
CREATE INDEX import_rows_seq ON import_rows (merchant_id, job_id, seq);

-- Operator commands run as the schema owner; the service has no business here.
REVOKE ALL ON import_rows FROM cardvault_service;
