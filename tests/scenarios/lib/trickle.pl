#!/usr/bin/env perl
# trickle.pl PORT ADDRS PER_ADDR INTERVAL_S RUN_S: opens PER_ADDR connections
# from each source address in ADDRS (comma-separated loopback addresses),
# sends a request line at once, then one header byte per connection every
# INTERVAL_S seconds (a slowloris that never goes idle), for RUN_S seconds.
# A connection the server closes is not reopened. Prints one line:
#   opened N closed N min_life S max_life S
# where the lives are the seconds from connect to the server's close.
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time sleep);

$SIG{PIPE} = "IGNORE";
my ($port, $addrs, $per, $interval, $run) = @ARGV;
die "usage: trickle.pl PORT ADDRS PER_ADDR INTERVAL_S RUN_S\n" unless defined $run;
my (@conns, @closed);
for my $a (split /,/, $addrs) {
    for (1 .. $per) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      LocalAddr => $a, Proto => 'tcp', Blocking => 1) or next;
        $s->blocking(0);
        syswrite($s, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        push @conns, {s => $s, t0 => time, open => 1};
    }
}
my $start = time;
my $next = $start;
while (time - $start < $run) {
    my $sel = IO::Select->new(map { $_->{s} } grep { $_->{open} } @conns);
    last unless $sel->count;
    my $wait = $next - time;
    $wait = 0 if $wait < 0;
    for my $fh ($sel->can_read($wait > 0.05 ? 0.05 : $wait)) {
        my ($c) = grep { $_->{open} && $_->{s} == $fh } @conns;
        my $buf;
        my $n = sysread($fh, $buf, 4096);
        if (!defined $n || $n == 0) { # closed or reset by the server
            $c->{open} = 0;
            push @closed, time - $c->{t0};
            close $fh;
        }
    }
    if (time >= $next) {
        for my $c (grep { $_->{open} } @conns) {
            if (!defined syswrite($c->{s}, 'a')) {
                next if $!{EAGAIN};
                $c->{open} = 0;
                push @closed, time - $c->{t0};
                close $c->{s};
            }
        }
        $next += $interval;
    }
}
my @s = sort { $a <=> $b } @closed;
printf "opened %d closed %d min_life %.2f max_life %.2f\n", scalar @conns, scalar @closed,
    @s ? $s[0] : 0, @s ? $s[-1] : 0;
