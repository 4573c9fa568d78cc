-- The service's least-privilege role, and a guard on the audit chain's tip.
--
-- `cardvault migrate` and the operator commands run as the schema owner;
-- `cardvault serve` runs as a login role that is a member of the NOLOGIN group
-- role cardvault_service, which may do exactly what serve needs and nothing
-- else: no DDL, no TRUNCATE, no trigger changes, no UPDATE or DELETE on
-- audit_events. docs/operations.md says how to create the login role.
--
-- The group role is created here when it does not exist and the migrating
-- role may create roles (CREATEROLE or superuser). Otherwise an operator must
-- create it first (CREATE ROLE cardvault_service NOLOGIN); without it this
-- migration fails with SQLSTATE 42704 and leaves no trace.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cardvault_service') THEN
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user
                   AND (rolcreaterole OR rolsuper)) THEN
            CREATE ROLE cardvault_service NOLOGIN;
        ELSE
            RAISE EXCEPTION 'role cardvault_service does not exist and % may not create it',
                current_user USING ERRCODE = 'undefined_object';
        END IF;
    END IF;
END
$$;

-- Start from nothing: what this role holds is listed below and only that.
REVOKE ALL ON schema_migrations, vault_meta, merchants, api_keys, data_keys, tokens,
    idempotency_keys, audit_events, audit_head FROM cardvault_service;
GRANT USAGE ON SCHEMA public TO cardvault_service;

GRANT SELECT ON schema_migrations TO cardvault_service;
-- The first start binds the vault to its KEK (INSERT). Inserting a data key
-- locks the vault_meta row FOR SHARE (only under the KEK the vault names),
-- and PostgreSQL lets a row lock be taken only with UPDATE on some column:
-- rewrapped_at, which serve never writes and which nothing trusts.
GRANT SELECT, INSERT ON vault_meta TO cardvault_service;
GRANT UPDATE (rewrapped_at) ON vault_meta TO cardvault_service;
-- Data keys: created, reserved in blocks and retired at run time; never
-- rewrapped or destroyed by serve (wrapped_key, destroyed_at stay owner-only).
GRANT SELECT, INSERT ON data_keys TO cardvault_service;
GRANT UPDATE (use_count, state, retired_at) ON data_keys TO cardvault_service;
GRANT USAGE ON SEQUENCE data_keys_dek_id_seq TO cardvault_service;
GRANT SELECT ON merchants, api_keys TO cardvault_service;
GRANT SELECT, INSERT, DELETE ON tokens TO cardvault_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO cardvault_service;
-- Audit: append only. SELECT because the batch append reads back the hash it
-- inserted (RETURNING) and the anchor log reads the head.
GRANT SELECT, INSERT ON audit_events TO cardvault_service;
GRANT SELECT, UPDATE ON audit_head TO cardvault_service;
GRANT EXECUTE ON FUNCTION audit_canonical(bigint, timestamptz, text, text, text, text, text, text,
                                          text) TO cardvault_service;
GRANT EXECUTE ON FUNCTION audit_append(text, text, text, text, text, text, text)
    TO cardvault_service;
GRANT EXECUTE ON FUNCTION audit_append_batch(text[], text[], text[], text[], text[], text[], text[])
    TO cardvault_service;

-- The chain's tip may only move forward, onto an event that exists with that
-- very hash; it can be neither deleted nor truncated. Together with the
-- append-only trigger on audit_events, a role that cannot disable triggers
-- (only a table's owner can) cannot cut the tail and hide it.
CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id IS DISTINCT FROM OLD.id OR NEW.seq <= OLD.seq OR NOT EXISTS (
                SELECT 1 FROM audit_events e WHERE e.seq = NEW.seq AND e.hash = NEW.hash) THEN
            RAISE EXCEPTION 'audit_head only moves forward onto an existing event'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_head cannot be removed' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_guard();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard();
