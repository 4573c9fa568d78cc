#!/usr/bin/perl
# hold-client.pl PORT OUT: an HTTP/1.1 client that keeps connections open,
# for tests/scenarios/heap-scan.sh. Reads requests from stdin, one a line:
# "METHOD<TAB>PATH<TAB>KEY<TAB>BODY<TAB>CLOSE" (BODY may be empty; CLOSE 1
# sends "Connection: close", as a proxy speaking HTTP/1.0 upstream does, else
# the connection is kept alive). Opens one connection per request to
# 127.0.0.1:PORT, all at once (as on a busy server), then one more, the
# "pin", which carries nothing secret; then sends each request, reads each
# answer, writes "STATUS<TAB>BODY" per request to OUT, closes every request
# connection, appends "ready" to OUT and keeps the pin open until SIGTERM.
# Why the pin: the service allocates a connection's memory when it accepts
# it, so the request connections' memory, once freed, lies below the pin's,
# as on a server with other clients connected, instead of at the top of the
# heap, where glibc may hand it back to the kernel by chance.
use strict;
use warnings;
use IO::Socket::INET;

my ($port, $out) = @ARGV;
die "usage: hold-client.pl PORT OUT\n" unless defined $out;

sub connect_one {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
        or die "hold-client: connect: $!\n";
    binmode $s;
    return $s;
}

# Reads one answer: status line, headers, Content-Length bytes of body.
sub read_answer {
    my $s = shift;
    my $head = '';
    while ($head !~ /\r\n\r\n/) {
        my $n = sysread($s, my $b, 4096);
        die "hold-client: connection closed early\n" unless $n;
        $head .= $b;
    }
    my ($h, $body) = split /\r\n\r\n/, $head, 2;
    my ($status) = $h =~ m{^HTTP/1\.\d (\d{3})};
    my ($len) = $h =~ /^Content-Length:\s*(\d+)/mi;
    $len //= 0;
    while (length($body) < $len) {
        my $n = sysread($s, my $b, $len - length($body));
        last unless $n;
        $body .= $b;
    }
    return ($status // 0, $body);
}

sub send_request {
    my ($s, $m, $path, $key, $body, $close) = @_;
    my $r = "$m $path HTTP/1.1\r\nHost: 127.0.0.1:$port\r\n";
    $r .= "Connection: close\r\n" if $close;
    $r .= "Authorization: Bearer $key\r\n" if defined $key && length $key;
    if (defined $body && length $body) {
        $r .= "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n";
    }
    $r .= "\r\n";
    $r .= $body if defined $body;
    syswrite($s, $r) == length($r) or die "hold-client: write: $!\n";
}

my @reqs;
while (my $line = <STDIN>) {
    chomp $line;
    next if $line eq '';
    push @reqs, [split /\t/, $line, 5];
}
my @conns = map { connect_one() } @reqs;
my $pin = connect_one();
for my $i (0 .. $#reqs) { send_request($conns[$i], @{$reqs[$i]}); }
open(my $fh, '>', $out) or die "hold-client: $out: $!\n";
for my $i (0 .. $#reqs) {
    my ($st, $body) = read_answer($conns[$i]);
    $body =~ s/[\t\n]/ /g;
    print $fh "$st\t$body\n";
}
close $_ for @conns;
send_request($pin, 'GET', '/healthz');
read_answer($pin);
print $fh "ready\n";
close $fh;
$SIG{TERM} = sub { close $pin; exit 0; };
sleep 1 while 1;
