#!/usr/bin/env perl
# chunked-flood.pl PORT KEY MAX_BYTES: POST /v1/tokens with a chunked body of
# up to MAX_BYTES (64 KiB chunks, as fast as the server takes them), reading
# whatever the server answers meanwhile. Stops when the server closes or
# resets the connection, or when everything was sent and answered. Prints:
#   sent N status S closed_early 0|1
# and the response body on the next line. sent counts the body bytes the
# kernel accepted; status is the HTTP status received (0 if none).
use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);

$SIG{PIPE} = "IGNORE"; # a reset shows as a write error, not a signal
my ($port, $key, $max) = @ARGV;
die "usage: chunked-flood.pl PORT KEY MAX_BYTES\n" unless defined $max;
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
    or die "connect: $!\n";
$s->blocking(0);
my $head = "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $key\r\n"
         . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
my $chunk = sprintf("%x\r\n", 65536) . ('{' x 65536) . "\r\n";
my ($out, $sent, $resp, $closed, $done_writing) = ($head, 0, '', 0, 0);
my $body_total = 0;
my $t0 = time;
while (time - $t0 < 60) {
    if (!$done_writing && length($out) == 0) {
        if ($body_total < $max) { $out = $chunk; $body_total += 65536; }
        else { $out = "0\r\n\r\n"; $done_writing = 1; }
    }
    my $sel = IO::Select->new($s);
    my ($r, $w) = IO::Select->select($sel, length($out) ? $sel : undef, undef, 1);
    if ($r && @$r) {
        my $buf;
        my $n = sysread($s, $buf, 65536);
        if (!defined $n || $n == 0) { $closed = 1; last; }
        $resp .= $buf;
        last if $done_writing && $resp =~ /\r\n\r\n/ && length($out) == 0;
    }
    if ($w && @$w && length($out)) {
        my $n = syswrite($s, $out);
        if (!defined $n) { next if $!{EAGAIN}; $closed = 1; last; }
        $sent += $n;
        substr($out, 0, $n) = '';
    }
}
# Whatever was already on its way (the answer before a reset).
$s->blocking(1);
my $buf;
while (defined(my $n = sysread($s, $buf, 65536))) { last if $n == 0; $resp .= $buf; }
my ($status) = $resp =~ m{^HTTP/1\.[01] (\d{3})};
my ($body) = $resp =~ /\r\n\r\n(.*)\z/s;
printf "sent %d status %d closed_early %d\n", $sent, $status // 0, ($closed && !$done_writing) ? 1 : 0;
print(($body // ''), "\n");
