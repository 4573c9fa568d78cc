#!/usr/bin/perl
# Search patterns for the no-plaintext-anywhere proof (storage-proof.sh).
#
#   proof-patterns.pl gen VALUES PATTERNS IDS
#       VALUES: lines "kind<TAB>index<TAB>value", kind pan | cvc | name.
#       Writes one pattern per line to PATTERNS (raw bytes; no pattern holds a
#       newline) and, on the same line of IDS, "kind#index form/encoding".
#   proof-patterns.pl map PATTERNS IDS < grep-o-output
#       Prints the id of every matched string (one per input line).
#
# Every value is searched in each textual form it could take (a PAN plain,
# grouped by spaces or hyphens, Amex 4-6-5; a CVC inside the JSON that
# carried it, raw or escaped inside another JSON string; a name as is), and
# each form in every encoding: as is, JSON \u00NN escapes (lower and upper
# hex), hex (lower, upper), base64 at all three byte alignments, UTF-16LE/BE.
# Base64: the characters that depend only on the value's own bytes, i.e. the
# complete groups after the one that mixes in a preceding byte; whatever sits
# around the value, its base64 text contains that middle part. For a short
# value that middle can stop a character or two before the value's end (a
# 4-digit CVC at one alignment keeps only `vc": "123`): the search then
# matches more, never less, and two canaries can share a pattern.
use strict;
use warnings;
use MIME::Base64 qw(encode_base64);

sub group4 {
    my ($s, $sep) = @_;
    return join($sep, $s =~ /(.{1,4})/g);
}

sub forms {
    my ($kind, $v) = @_;
    if ($kind eq 'pan') {
        my @f = (['digits', $v], ['spaces', group4($v, ' ')], ['hyphens', group4($v, '-')]);
        if (length($v) == 15) {
            my @p = (substr($v, 0, 4), substr($v, 4, 6), substr($v, 10, 5));
            push @f, ['amex-spaces', join(' ', @p)], ['amex-hyphens', join('-', @p)];
        }
        return @f;
    }
    if ($kind eq 'cvc') {
        return (['json', qq("cvc":"$v")], ['json-space', qq("cvc": "$v")],
                ['json-in-string', qq(\\"cvc\\":\\"$v\\")],
                ['json-space-in-string', qq(\\"cvc\\": \\"$v\\")], ['kv', "cvc=$v"]);
    }
    return (['text', $v]);
}

sub encodings {
    my ($fn, $t) = @_;
    my @e = ([$fn, $t]);
    push @e, ["$fn/json-escape", join('', map { sprintf('\\u%04x', ord) } split //, $t)];
    push @e, ["$fn/json-escape-upper", join('', map { sprintf('\\u%04X', ord) } split //, $t)];
    push @e, ["$fn/hex", unpack('H*', $t)], ["$fn/HEX", uc unpack('H*', $t)];
    for my $k (0 .. 2) {
        my $b64 = encode_base64(("\0" x $k) . $t, '');
        my $start = $k ? 4 : 0;
        my $end = int(($k + length $t) / 3) * 4;
        my $mid = substr($b64, $start, $end - $start);
        push @e, ["$fn/base64+$k", $mid] if length($mid) >= 8;
    }
    push @e, ["$fn/utf16le", pack('v*', unpack('C*', $t))];
    push @e, ["$fn/utf16be", pack('n*', unpack('C*', $t))];
    return @e;
}

my $mode = shift @ARGV // '';
if ($mode eq 'gen') {
    my ($values, $patterns, $ids) = @ARGV;
    open(my $in, '<', $values) or die "$values: $!";
    open(my $po, '>:raw', $patterns) or die "$patterns: $!";
    open(my $io, '>', $ids) or die "$ids: $!";
    my %seen;
    while (my $line = <$in>) {
        chomp $line;
        my ($kind, $idx, $v) = split /\t/, $line, 3;
        next unless defined $v && length $v;
        for my $f (forms($kind, $v)) {
            for my $e (encodings(@$f)) {
                my ($name, $bytes) = @$e;
                die "pattern with a newline" if $bytes =~ /\n/;
                next if $seen{$bytes}++;
                print $po $bytes, "\n";
                print $io "$kind#$idx $name\n";
            }
        }
    }
    exit 0;
}
if ($mode eq 'map') {
    my ($patterns, $ids) = @ARGV;
    open(my $pi, '<:raw', $patterns) or die "$patterns: $!";
    open(my $ii, '<', $ids) or die "$ids: $!";
    my %id;
    while (my $p = <$pi>) {
        chomp $p;
        my $i = <$ii>;
        chomp $i;
        $id{$p} = $i;
    }
    binmode STDIN;
    while (my $m = <STDIN>) {
        chomp $m;
        print(($id{$m} // 'unmapped-match'), "\n");
    }
    exit 0;
}
die "usage: $0 gen VALUES PATTERNS IDS | map PATTERNS IDS\n";
