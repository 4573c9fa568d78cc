#!/usr/bin/perl
# memscan.pl PID NAME=PATTERN...: reads every readable and writable mapping of
# a live process (/proc/PID/maps, then /proc/PID/mem; needs root or
# CAP_SYS_PTRACE when the process is not dumpable) and counts the occurrences
# of each literal PATTERN in it. Nothing is written to disk: the memory is
# read in chunks and searched in place.
# Prints one line per pattern: "NAME COUNT [region:count ...]" (regions by
# their maps name: [heap], [stack], a file name, or "anon"), then
# "bytes READ regions N unreadable M". Exit 0, or 2 when the process cannot
# be read at all.
use strict;
use warnings;
no warnings "portable";

my ($pid, @specs) = @ARGV;
die "usage: memscan.pl PID NAME=PATTERN...\n" unless defined $pid && $pid =~ /^\d+$/ && @specs;
my @pats;
for my $s (@specs) {
    my ($name, $pat) = split /=/, $s, 2;
    die "memscan: empty pattern for $name\n" unless defined $pat && length $pat;
    push @pats, { name => $name, re => qr/\Q$pat\E/, count => 0, where => {} };
}
my $overlap = 0;
for (@specs) { my $l = length((split /=/, $_, 2)[1]); $overlap = $l if $l > $overlap; }
$overlap -= 1;

open(my $maps, '<', "/proc/$pid/maps") or do { print STDERR "memscan: cannot read maps: $!\n"; exit 2; };
my @regions;
while (<$maps>) {
    # start-end perms offset dev inode [name]
    next unless /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s*(.*)$/;
    my ($lo, $hi, $perms, $name) = (hex $1, hex $2, $3, $4);
    next unless $perms =~ /^rw/;
    next if $name eq '[vvar]' || $name eq '[vsyscall]';
    $name = 'anon' if $name eq '';
    $name =~ s{.*/}{};
    push @regions, [$lo, $hi, $name];
}
close $maps;

open(my $mem, '<:raw', "/proc/$pid/mem") or do { print STDERR "memscan: cannot open mem: $!\n"; exit 2; };
my ($bytes, $unreadable) = (0, 0);
my $chunk = 4 << 20;
for my $r (@regions) {
    my ($lo, $hi, $name) = @$r;
    my $tail = '';
    for (my $at = $lo; $at < $hi; $at += $chunk) {
        my $want = $hi - $at < $chunk ? $hi - $at : $chunk;
        my $buf;
        my $got = sysseek($mem, $at, 0) ? sysread($mem, $buf, $want) : undef;
        if (!defined $got || $got <= 0) {
            $unreadable++;
            $tail = '';
            next;
        }
        $bytes += $got;
        my $hay = $tail . $buf;
        my $skip = length $tail; # matches that end inside $tail were counted already
        for my $p (@pats) {
            while ($hay =~ /$p->{re}/g) {
                next if $+[0] <= $skip;
                $p->{count}++;
                $p->{where}{$name}++;
                printf STDERR "memscan: %s at %x in %x-%x (%s)\n", $p->{name}, $at - length($tail) + $-[0], $lo, $hi, $name if $ENV{MEMSCAN_VERBOSE};
            }
        }
        $tail = $overlap > 0 && length($hay) > $overlap ? substr($hay, -$overlap) : '';
    }
}
close $mem;
for my $p (@pats) {
    my $w = join ' ', map { "$_:$p->{where}{$_}" } sort keys %{$p->{where}};
    print "$p->{name} $p->{count}", ($w ne '' ? " $w" : ''), "\n";
}
print "bytes $bytes regions ", scalar(@regions), " unreadable $unreadable\n";
exit 0;
