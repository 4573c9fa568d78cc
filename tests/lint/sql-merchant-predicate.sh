#!/usr/bin/env bash
# SQL tenant-scoping lint: every statement on a tenant table is scoped to one merchant.
#
#   tests/lint/sql-merchant-predicate.sh            lint service/*.c, then self-test
#   tests/lint/sql-merchant-predicate.sh FILE...    lint only these files (no summary line)
#
# Every SQL text in the service that touches a tenant table (tokens,
# audit_events, idempotency_keys, import_rows) must carry a `merchant_id = $n` predicate,
# or be on the allow-list below with the reason it is legitimately not
# scoped to one merchant. How it reads the C sources (a small perl
# tokenizer, no compiler needed):
#   - comments are dropped; string literals are decoded (\" \\ \n ...);
#   - `#define` macros of the same file are expanded (object-like and
#     function-like), so "SELECT " TOKEN_COLS " FROM tokens t ..." is read whole;
#   - adjacent string literals are concatenated, as the compiler does; a run
#     of literals is one SQL text when it has an SQL verb (SELECT, INSERT,
#     UPDATE, DELETE, MERGE, TRUNCATE, COPY, WITH) and names a tenant table
#     after FROM, JOIN, INTO, UPDATE, TABLE, ONLY, TRUNCATE, COPY, USING or a
#     comma (any case, optionally schema-qualified or quoted).
#   - each reference to a tenant table is checked in its own query level: the
#     innermost parenthesised group around it (or the whole text), minus any
#     nested sub-query. That level must contain `[alias.]merchant_id = $n`
#     (or `$n = [alias.]merchant_id`). A predicate in a sub-query, or on a
#     joined table only, does not count.
# A text that fails must match an allow-list entry exactly (whitespace
# collapsed), so any change to an allow-listed statement needs a new review;
# an entry that no longer matches anything fails the lint too (stale).
# Self-test (default run): tests/lint/fixtures/bad.c plants violating queries
# (each marked LINT-EXPECT-FAIL) and every one must be caught; fixtures/good.c
# holds correctly scoped queries in awkward shapes and must pass.
# Prints "ok"/"FAIL" per statement and "sql-lint: N passed, N failed", and
# appends "P F" to build/test-results. Exit 1 on any failure.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
command -v perl >/dev/null || { echo "sql-lint: perl is required"; exit 2; }

# ----------------------------------------------------------------------------
# Allow-list: FILE<TAB>SQL (whitespace-collapsed, exactly as the lint prints
# it). Lines starting with # are the review notes, one block per entry.
ALLOW=$(cat <<'EOF'
# INSERTs carry merchant_id as a column value: the row is written for the
# caller's merchant ($1 is call->who->merchant_id), nothing else is read or
# changed. A plain INSERT cannot have a WHERE predicate. The token insert
# reads data_keys (no tenant column) only to refuse a destroyed DEK.
store_tokens.c	INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, ciphertext, brand, bin, last4, fingerprint, created_at, metadata, expires_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, NULLIF($13, '')::timestamptz FROM data_keys WHERE dek_id = $4::bigint AND state <> 'destroyed' FOR KEY SHARE
# Group commit (store_batch.c through cv_tokens_insert_in): the same INSERT as a multi-row VALUES list
# built at run time; every row's merchant_id is a bound parameter taken from
# its request's authenticated merchant.
store_tokens.c	INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, ciphertext, brand, bin, last4, fingerprint, created_at, metadata, expires_at) VALUES
# Import mapping rows (cardvault import): merchant_id is $1, one bound
# parameter for the whole batch, given by the operator's --merchant; the
# rows come from unnest() over the batch's own arrays, nothing is read from
# any tenant table.
store_import.c	INSERT INTO import_rows (merchant_id, job_id, row_id, token, brand, last4, exp_month, exp_year, merged) SELECT $1, $2, u.row_id, u.token, u.brand, u.last4, u.m, u.y, u.merged FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::smallint[], $8::smallint[], $9::boolean[]) WITH ORDINALITY AS u(row_id, token, brand, last4, m, y, merged, n) ORDER BY u.n
# Idempotent tokenize: INSERT of the token row (merchant_id = $1), then the
# UPDATE of idempotency_keys joins on the inserted row (i.merchant_id =
# t.merchant_id, t being the row just inserted with merchant_id $1) and the
# caller's key hash ($12): it can only touch the caller's own record.
store_tokens.c	WITH t AS (INSERT INTO tokens (merchant_id, token, format_version, dek_id, nonce, ciphertext, brand, bin, last4, fingerprint, created_at, metadata, expires_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, NULLIF($13, '')::timestamptz FROM data_keys WHERE dek_id = $4::bigint AND state <> 'destroyed' FOR KEY SHARE RETURNING merchant_id), u AS (UPDATE idempotency_keys i SET state = 'done', status_code = 201, response_body = $15 FROM t WHERE i.merchant_id = t.merchant_id AND i.key_hash = $14 AND i.state = 'in_progress' RETURNING 1) SELECT count(*) FROM t
# Idempotency claim: INSERT with merchant_id = $1; the ON CONFLICT branch only
# ever updates the row that conflicts on the primary key (merchant_id,
# key_hash) = ($1, $2), i.e. the caller's own record.
store_tokens.c	INSERT INTO idempotency_keys (merchant_id, key_hash, request_hash, state, expires_at) VALUES ($1, $2, $3, 'in_progress', now() + make_interval(secs => $4)) ON CONFLICT (merchant_id, key_hash) DO UPDATE SET request_hash = EXCLUDED.request_hash, state = 'in_progress', status_code = NULL, response_body = NULL, created_at = now(), expires_at = EXCLUDED.expires_at WHERE idempotency_keys.expires_at < now() OR (idempotency_keys.state = 'in_progress' AND idempotency_keys.created_at < now() - make_interval(secs => $5)) RETURNING 1
# Housekeeping purge of expired idempotency records, all merchants: run by the
# service's housekeeping thread on a timer, never on a request, returns nothing.
store_tokens.c	DELETE FROM idempotency_keys WHERE expires_at < now()
# Expired-token purge, all merchants: run by the housekeeping thread on a
# timer and by `cardvault tokens purge-expired`, never on a request. It
# deletes only rows whose own expires_at has passed (rows the API already
# answers as missing), at most $1 a batch, returns only each merchant's
# count, and appends one audit event per merchant with that count in the
# same transaction.
store_tokens.c	WITH gone AS (DELETE FROM tokens WHERE (merchant_id, token) IN (SELECT merchant_id, token FROM tokens WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING merchant_id) SELECT merchant_id, count(*) FROM gone GROUP BY merchant_id ORDER BY merchant_id
# Key lifecycle (operator CLI, `cardvault keys ...`, store_keys.c): DEKs are
# shared by all merchants, so these work across merchants by design.
# `keys status`: the number of tokens each DEK protects (a count, no row data).
store_keys.c	SELECT d.dek_id, d.state, extract(epoch FROM now() - d.created_at)::bigint, d.use_count, d.max_uses, (SELECT count(*) FROM tokens t WHERE t.dek_id = d.dek_id) FROM data_keys d ORDER BY d.dek_id
# `keys reencrypt`: the next batch of rows still under a retired DEK; each row
# is re-sealed with its own merchant_id in the AAD and written back by
# update_cipher, which is scoped (merchant_id = $1 AND token = $2). The clear
# columns come along because opening a row checks them against its card.
store_keys.c	SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, t.brand, t.bin, t.last4, t.fingerprint FROM tokens t JOIN data_keys d USING (dek_id) WHERE d.state = 'retired' AND d.retired_at < now() - interval '10 seconds' AND ($1::bigint = 0 OR t.dek_id = $1::bigint) ORDER BY t.dek_id, t.merchant_id, t.token LIMIT $2
# `keys destroy-dek`: how many tokens became unrecoverable (a count, reported
# to the operator and audited).
store_keys.c	UPDATE data_keys SET state = 'destroyed', wrapped_key = NULL, destroyed_at = now() WHERE dek_id = $1 AND state = 'retired' AND retired_at < now() - interval '10 seconds' RETURNING (SELECT count(*) FROM tokens WHERE dek_id = $1)
# Batched reads (store_batch.c via store_tokens.c): concurrent GET/detokenize
# lookups in one query. Each key is a (merchant_id, token) pair from one
# authenticated request, joined on BOTH columns, so a row is returned only
# for the merchant that asked for it; results go back to each request by the
# same pair (cv_store_get_tokens_batch).
store_tokens.c	SELECT t.merchant_id, t.token, t.format_version, t.dek_id, t.nonce, t.ciphertext, t.brand, t.bin, t.last4, t.fingerprint, to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), d.state = 'destroyed', t.metadata::text, to_char(t.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), (extract(epoch FROM t.created_at) * 1000000)::bigint FROM tokens t JOIN data_keys d USING (dek_id) JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, token) ON t.merchant_id = k.merchant_id AND t.token = k.token WHERE (t.expires_at IS NULL OR t.expires_at > now())
# `cardvault audit verify|export` (store_audit.c): the hash chain spans every
# merchant's events in seq order, so verifying or exporting it reads them all.
# Operator CLI only; no HTTP route reaches it. (Appends go through the SQL
# function audit_append(), whose merchant_id is a parameter: an INSERT that
# carries merchant_id as a value. The storage scanner of `cardvault audit
# storage` builds "DECLARE ... SELECT <columns> FROM ONLY <table>" from the
# catalog with PQescapeIdentifier; it names no table in the source, so this
# lint cannot see it: operator CLI only, reads every table by design.)
store_audit.c	SELECT seq, (extract(epoch FROM occurred_at) * 1000000)::bigint, actor, merchant_id, token, request_id, action, outcome, detail, prev_hash, hash, mac FROM audit_events WHERE seq > $1::bigint AND ($2::bigint IS NULL OR occurred_at >= timestamptz 'epoch' + $2::bigint * interval '1 microsecond') ORDER BY seq LIMIT $3::int
EOF
)

lint() { # lint ALLOWFILE FILE...: one line per tenant SQL text; last line "TOTAL P F"
  perl - "$@" <<'PERL'
use strict;
use warnings;

my ($allowfile, @files) = @ARGV;
my $TABLES = qr/tokens|audit_events|idempotency_keys|import_rows/;
my $REF = qr/(?:\b(?:FROM|JOIN|INTO|UPDATE|TABLE|ONLY|TRUNCATE|COPY|USING)|,)\s+(?:ONLY\s+)?(?:"?public"?\.)?"?($TABLES)"?(?![\w.])/i;
my $VERB = qr/\b(?:SELECT|INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY|WITH)\b/i;
my $KEYWORDS = qr/^(?:WHERE|JOIN|ON|USING|SET|VALUES|GROUP|ORDER|LIMIT|OFFSET|LEFT|RIGHT|INNER|OUTER|FULL|CROSS|NATURAL|RETURNING|FOR|AS|DEFAULT|SELECT|UNION|EXCEPT|INTERSECT|HAVING|WINDOW|FETCH|TABLESAMPLE|OVERRIDING|ON)$/i;
my $SUBQ = qr/^\s*(?:SELECT|WITH|INSERT|UPDATE|DELETE|VALUES)\b/i;

# allow-list: "file\tsql"
my %allow; my %allow_used;
open(my $af, '<', $allowfile) or die "cannot read allow-list";
while (<$af>) {
    chomp;
    next if /^\s*(#|$)/;
    my ($f, $sql) = split /\t/, $_, 2;
    $sql =~ s/\s+/ /g; $sql =~ s/^ | $//g;
    $allow{"$f\t$sql"} = 1;
}
close $af;

sub decode_str {
    my ($s) = @_;
    my %esc = (n => "\n", t => "\t", r => "\r", '\\' => '\\', '"' => '"', "'" => "'", '0' => "\0", a => "\a", b => "\b", f => "\f", v => "\x0b", '?' => '?');
    $s =~ s/\\(x[0-9a-fA-F]+|[0-7]{1,3}|.)/
        my $e = $1;
        $e =~ m{^x}i ? chr(hex(substr($e, 1))) : $e =~ m{^[0-7]} ? chr(oct($e)) : ($esc{$e} \/\/ $e)/ge;
    return $s;
}

# tokenize(text, line0, \%macros): tokens [type, value, line]; records #defines.
sub tokenize {
    my ($src, $line, $macros) = @_;
    my @t;
    my $bol = 1;
    while (length $src) {
        if ($src =~ s/^([ \t\r\f\x0b]+)//) { next; }
        if ($src =~ s/^\n//) { $line++; $bol = 1; next; }
        if ($bol && defined $macros && $src =~ s/^#((?:[^\n\\]|\\.|\\\n)*)//s) {
            my $d = $1; my $nl = () = $d =~ /\n/g;
            my $l0 = $line; $line += $nl;
            $d =~ s/\\\n/ /g;
            if ($d =~ /^\s*define\s+(\w+)(\(([^)]*)\))?\s*(.*)$/s) {
                my ($name, $params, $body) = ($1, $3, $4);
                my @p = defined $params ? map { s/^\s+|\s+$//gr } split /,/, $params : ();
                $macros->{$name} = { params => (defined $params ? \@p : undef), body => [tokenize($body, $l0, undef)] };
            }
            next;
        }
        $bol = 0;
        if ($src =~ s{^//[^\n]*}{}) { next; }
        if ($src =~ s{^/\*(.*?)\*/}{}s) { my $c = $1; $line += () = $c =~ /\n/g; next; }
        if ($src =~ s/^(?:u8|[uUL])?"((?:[^"\\\n]|\\.)*)"//s) { push @t, ['S', decode_str($1), $line]; next; }
        if ($src =~ s/^(?:[uUL])?'(?:[^'\\\n]|\\.)*'//s) { push @t, ['P', 'c', $line]; next; }
        if ($src =~ s/^([A-Za-z_]\w*)//) { push @t, ['I', $1, $line]; next; }
        if ($src =~ s/^(\d[\w.]*)//) { push @t, ['N', $1, $line]; next; }
        $src =~ s/^(.)//s; push @t, ['P', $1, $line];
    }
    return @t;
}

# expand(\@tokens, \%macros, depth): same-file macros replaced by their bodies.
sub expand {
    my ($toks, $macros, $depth) = @_;
    return @$toks if $depth > 16;
    my @out;
    for (my $i = 0; $i < @$toks; $i++) {
        my $tk = $toks->[$i];
        my $m = $tk->[0] eq 'I' ? $macros->{$tk->[1]} : undef;
        if (!$m) { push @out, $tk; next; }
        if (!defined $m->{params}) {
            push @out, expand([map { [$_->[0], $_->[1], $tk->[2]] } @{$m->{body}}], $macros, $depth + 1);
            next;
        }
        next unless $i + 1 < @$toks && $toks->[$i + 1][1] eq '(';
        my ($j, $lvl, @args, @cur) = ($i + 2, 1);
        for (; $j < @$toks; $j++) {
            my $v = $toks->[$j][1];
            if ($toks->[$j][0] eq 'P' && $v eq '(') { $lvl++; }
            elsif ($toks->[$j][0] eq 'P' && $v eq ')') { last if --$lvl == 0; }
            elsif ($toks->[$j][0] eq 'P' && $v eq ',' && $lvl == 1) { push @args, [@cur]; @cur = (); next; }
            push @cur, $toks->[$j];
        }
        push @args, [@cur];
        my %arg; @arg{@{$m->{params}}} = @args;
        my @body;
        for my $b (@{$m->{body}}) {
            if ($b->[0] eq 'I' && exists $arg{$b->[1]}) { push @body, @{$arg{$b->[1]}}; }
            else { push @body, [$b->[0], $b->[1], $tk->[2]]; }
        }
        push @out, expand(\@body, $macros, $depth + 1);
        $i = $j;
    }
    return @out;
}

# The text of the query level holding position $pos: innermost enclosing
# (...) group, or all, with nested sub-queries blanked out.
sub level_of {
    my ($sql, $pos) = @_;
    my @stack; my ($start, $end) = (0, length $sql);
    my @open;
    for (my $i = 0; $i < length $sql; $i++) {
        my $c = substr($sql, $i, 1);
        if ($c eq "'") { my $k = index($sql, "'", $i + 1); $i = $k < 0 ? length $sql : $k; next; }
        if ($c eq '(') { push @open, $i; }
        elsif ($c eq ')') { my $o = pop @open; if (defined $o && $o < $pos && $i > $pos) { ($start, $end) = ($o + 1, $i); last; } }
    }
    my $lvl = substr($sql, $start, $end - $start);
    my $rel = $pos - $start;
    # blank nested groups that are sub-queries (not the one holding $pos)
    my $out = ''; my $depth = 0; my $gstart;
    my @chars = split //, $lvl;
    my @mask = (1) x @chars;
    my @st;
    for (my $i = 0; $i < @chars; $i++) {
        if ($chars[$i] eq '(') { push @st, $i; }
        elsif ($chars[$i] eq ')' && @st) {
            my $o = pop @st;
            next if @st; # only top-level groups of this level
            my $inner = join '', @chars[$o + 1 .. $i - 1];
            if ($inner =~ $SUBQ && !($o < $rel && $i > $rel)) { @mask[$o .. $i] = (0) x ($i - $o + 1); }
        }
    }
    return join '', map { $mask[$_] ? $chars[$_] : ' ' } 0 .. $#chars;
}

my ($passed, $failed) = (0, 0);
for my $file (@files) {
    open(my $fh, '<', $file) or do { print "FAIL $file: cannot read\n"; $failed++; next; };
    local $/; my $src = <$fh>; close $fh;
    my %macros;
    my @toks = tokenize($src, 1, \%macros);
    @toks = expand(\@toks, \%macros, 0);
    (my $base = $file) =~ s{.*/}{};
    my @runs;
    for (my $i = 0; $i < @toks; $i++) {
        next unless $toks[$i][0] eq 'S';
        my ($s, $line) = ('', $toks[$i][2]);
        while ($i < @toks && $toks[$i][0] eq 'S') { $s .= $toks[$i][1]; $i++; }
        push @runs, [$s, $line];
    }
    for my $r (@runs) {
        my ($sql, $line) = @$r;
        (my $norm = $sql) =~ s{/\*.*?\*/}{ }gs;   # SQL comments hide nothing
        $norm =~ s/--[^\n]*//g;
        $norm =~ s/\s+/ /g; $norm =~ s/^ | $//g;
        next unless $norm =~ $VERB;
        my @unscoped;
        my $nrefs = 0;
        while ($norm =~ /$REF/g) {
            my ($table, $pos, $after) = ($1, $-[1], $+[0]);
            $nrefs++;
            my %qual = (lc $table => 1);
            if (substr($norm, $after) =~ /^\s+(?:AS\s+)?([A-Za-z_]\w*)/i && $1 !~ $KEYWORDS) { $qual{lc $1} = 1; }
            my $level = level_of($norm, $pos);
            my $ok = 0;
            while ($level =~ /(?<![\w.])(?:"?(\w+)"?\.)?"?merchant_id"?\s*=\s*\$\d+|\$\d+\s*=\s*(?:"?(\w+)"?\.)?"?merchant_id\b/gi) {
                my $q = defined $1 ? $1 : $2;
                $ok = 1 if !defined $q || $qual{lc $q};
            }
            # an OR beside the predicate (outside parentheses) can bypass it
            (my $flat = $level) =~ s/\((?:[^()]|(?R))*\)/ /g;
            $ok = 0 if $flat =~ /\bOR\b/i;
            push @unscoped, $table unless $ok;
        }
        next unless $nrefs;
        my $short = length($norm) > 110 ? substr($norm, 0, 107) . '...' : $norm;
        if (!@unscoped) { $passed++; print "ok   $base:$line scoped: $short\n"; next; }
        if ($allow{"$base\t$norm"}) {
            $allow_used{"$base\t$norm"} = 1; $passed++;
            print "ok   $base:$line allow-listed (" . join(',', @unscoped) . "): $short\n";
            next;
        }
        $failed++;
        print "FAIL $base:$line no merchant_id = \$n predicate on " . join(', ', @unscoped) . ":\n     $norm\n";
    }
}
print "UNUSED\t$_\n" for grep { !$allow_used{$_} } sort keys %allow;
print "TOTAL $passed $failed\n";
PERL
}

allowfile=$(mktemp)
trap 'rm -f "$allowfile"' EXIT
printf '%s\n' "$ALLOW" >"$allowfile"

if [ $# -gt 0 ]; then
  out=$(lint "$allowfile" "$@")
  grep -v -e '^TOTAL ' -e '^UNUSED' <<<"$out"
  read -r _ p f < <(grep '^TOTAL ' <<<"$out")
  [ "${f:-1}" -eq 0 ]
  exit $?
fi

passed=0
failed=0
out=$(lint "$allowfile" service/*.c)
grep -v -e '^TOTAL ' -e '^UNUSED' <<<"$out"
read -r _ p f < <(grep '^TOTAL ' <<<"$out")
passed=$((passed + ${p:-0}))
failed=$((failed + ${f:-1}))
while IFS=$'\t' read -r _ file sql; do
  echo "FAIL stale allow-list entry ($file matches no statement): $sql"
  failed=$((failed + 1))
done < <(grep '^UNUSED' <<<"$out")
if [ "${p:-0}" -eq 0 ]; then
  echo "FAIL no tenant SQL found in service/*.c: the extractor is broken"
  failed=$((failed + 1))
fi

# Self-test: the planted violations must all be caught, the good shapes pass.
expect=$(grep -c '/\* LINT-EXPECT-FAIL \*/' tests/lint/fixtures/bad.c)
out=$(lint "$allowfile" tests/lint/fixtures/bad.c)
read -r _ bp bf < <(grep '^TOTAL ' <<<"$out")
if [ "$expect" -gt 0 ] && [ "${bf:-0}" -eq "$expect" ] && [ "${bp:-1}" -eq 0 ]; then
  echo "ok   self-test: all $expect planted violations in tests/lint/fixtures/bad.c are caught"
  passed=$((passed + 1))
else
  echo "FAIL self-test: tests/lint/fixtures/bad.c plants $expect violations, the lint caught ${bf:-0} (and passed ${bp:-0})"
  grep -v -e '^TOTAL ' -e '^UNUSED' <<<"$out" | sed 's/^/     | /'
  failed=$((failed + 1))
fi
expect=$(grep -c '/\* LINT-EXPECT-PASS \*/' tests/lint/fixtures/good.c)
out=$(lint "$allowfile" tests/lint/fixtures/good.c)
read -r _ gp gf < <(grep '^TOTAL ' <<<"$out")
if [ "${gf:-1}" -eq 0 ] && [ "${gp:-0}" -eq "$expect" ]; then
  echo "ok   self-test: all $expect scoped queries in tests/lint/fixtures/good.c pass"
  passed=$((passed + 1))
else
  echo "FAIL self-test: tests/lint/fixtures/good.c has $expect scoped queries; ${gp:-0} passed, ${gf:-0} failed"
  grep -v -e '^TOTAL ' -e '^UNUSED' <<<"$out" | sed 's/^/     | /'
  failed=$((failed + 1))
fi

echo "sql-lint: $passed passed, $failed failed"
mkdir -p build
echo "$passed $failed" >>build/test-results
[ "$failed" -eq 0 ]
