#!/usr/bin/env bash
# Architecture check: the include graph follows docs/architecture.md.
#
#   tests/lint/architecture.sh              check the tree, then self-test
#   tests/lint/architecture.sh --root DIR   check the tree under DIR only
#
# (a) No include cycle between modules. The files are service/**/*.c,
#     service/**/*.h and include/cardvault/*.h; a file's module is its name
#     without extension and without an "_internal" suffix (store_pg.c,
#     store_pg_internal.h and cardvault/store_pg.h are one module). Module A
#     depends on module B when a file of A has a quoted #include of a file of
#     B. A strongly connected set of two or more modules is a cycle: every
#     include line inside it is reported.
# (b) Third-party headers: every #include <...> that is not C11, POSIX or
#     glibc must match a row of the table in docs/architecture.md (between
#     the "third-party:begin" and "third-party:end" markers), and the
#     including file (a file of service/, matched by its name) must be one of
#     the modules that row names. The public headers in include/ may not
#     include any third-party header: they are what every layer sees.
# Self-test (default run): tests/lint/fixtures/arch/ is a small tree with
# planted violations, each include line marked ARCH-EXPECT-FAIL; checked
# against the real table, exactly those lines must be reported.
# Prints "FAIL file:line: why" per finding and "arch: N passed, N failed";
# appends "P F" to build/test-results. Exit 1 on any finding.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO" || exit 2
command -v perl >/dev/null || { echo "arch: perl is required"; exit 2; }
DOC=docs/architecture.md

check() { # check ROOT: prints findings, then "TOTAL P F"
  perl - "$1" "$DOC" <<'PERL'
use strict;
use warnings;
use File::Find;

my ($root, $doc) = @ARGV;

# C11, POSIX and glibc headers: the platform, not a third-party library.
my %libc = map { $_ => 1 } qw(
  assert.h complex.h ctype.h errno.h fenv.h float.h inttypes.h iso646.h limits.h locale.h
  math.h setjmp.h signal.h stdalign.h stdarg.h stdatomic.h stdbool.h stddef.h stdint.h
  stdio.h stdlib.h stdnoreturn.h string.h tgmath.h threads.h time.h uchar.h wchar.h wctype.h
  aio.h cpio.h dirent.h dlfcn.h fcntl.h fmtmsg.h fnmatch.h ftw.h glob.h grp.h iconv.h
  langinfo.h libgen.h monetary.h mqueue.h ndbm.h netdb.h nl_types.h poll.h pthread.h pwd.h
  regex.h sched.h search.h semaphore.h spawn.h strings.h syslog.h tar.h termios.h trace.h
  ulimit.h unistd.h utime.h utmpx.h wordexp.h arpa/inet.h net/if.h netinet/in.h
  netinet/tcp.h getopt.h endian.h features.h malloc.h);
sub is_libc { my $h = shift; return $libc{$h} || $h =~ m{^sys/[\w/]+\.h$}; }

# The table: | `header glob` | library | `module`, `module` or - | why |
my @rows;
open(my $dh, '<', $doc) or die "arch: cannot read $doc\n";
my $in = 0;
while (<$dh>) {
    if (/third-party:begin/) { $in = 1; next; }
    if (/third-party:end/) { $in = 0; next; }
    next unless $in && /^\|\s*`([^`]+)`\s*\|[^|]*\|([^|]*)\|/;
    my ($hdr, $mods) = ($1, $2);
    my @mods = $mods =~ /`([^`]+)`/g;
    push @rows, [$hdr, \@mods];
}
close $dh;
die "arch: no third-party table in $doc\n" unless @rows;
sub glob_re { my $g = quotemeta shift; $g =~ s/\\\*/[^\/]*/g; return qr/^$g$/; }

# The files.
my @files;
for my $dir ("$root/service", "$root/include/cardvault") {
    next unless -d $dir;
    find({ no_chdir => 1, wanted => sub { push @files, $_ if -f $_ && /\.[ch]$/ } }, $dir);
}
@files = sort @files;
sub rel { my $f = shift; $f =~ s{^\Q$root\E/}{}; return $f; }
sub module_of { my $f = shift; $f =~ s{.*/}{}; $f =~ s/\.[ch]$//; $f =~ s/_internal$//; return $f; }

my ($passed, $failed) = (0, 0);
my (%edges, %edge_lines);
my %known = map { $_ => 1 } @files;
for my $file (@files) {
    open(my $fh, '<', $file) or next;
    my $rel = rel($file);
    my ($dir) = $file =~ m{^(.*)/};
    my $bad = 0;
    my $src = do { local $/; <$fh> };
    close $fh;
    $src =~ s{/\*.*?\*/}{ my $c = $&; $c =~ s/[^\n]//g; $c }gse;   # comments out, lines kept
    my $line = 0;
    for (split /\n/, $src) {
        $line++;
        if (/^\s*#\s*include\s*"([^"]+)"/) {
            my $inc = $1;
            my ($target) = grep { $known{$_} } ("$dir/$inc", "$root/service/$inc", "$root/include/$inc");
            next unless defined $target;
            my ($a, $b) = (module_of($file), module_of($target));
            next if $a eq $b;
            $edges{$a}{$b} = 1;
            push @{$edge_lines{"$a\t$b"}}, "$rel:$line";
        } elsif (/^\s*#\s*include\s*<([^>]+)>/) {
            my $h = $1;
            next if is_libc($h);
            my ($row) = grep { $h =~ glob_re($_->[0]) } @rows;
            if (!$row) {
                print "FAIL $rel:$line: <$h> is a third-party header with no row in $doc\n";
                $failed++; $bad = 1; next;
            }
            (my $name = $file) =~ s{.*/}{};
            my $ok = $rel =~ m{^service/} && grep { $name =~ glob_re($_) } @{$row->[1]};
            next if $ok;
            my $who = @{$row->[1]} ? join(', ', @{$row->[1]}) : 'no service module';
            my $where = $rel =~ m{^include/} ? ' (a public header: no third-party header may appear in include/)' : '';
            print "FAIL $rel:$line: <$h> may be included only by $who$where\n";
            $failed++; $bad = 1;
        }
    }
    $passed++ unless $bad;
}

# Tarjan's strongly connected components over the module graph.
my ($index, @stack, %idx, %low, %on, @sccs) = (0);
sub strong {
    my $v = shift;
    $idx{$v} = $low{$v} = $index++;
    push @stack, $v; $on{$v} = 1;
    for my $w (sort keys %{$edges{$v} || {}}) {
        if (!exists $idx{$w}) { strong($w); $low{$v} = $low{$w} if $low{$w} < $low{$v}; }
        elsif ($on{$w}) { $low{$v} = $idx{$w} if $idx{$w} < $low{$v}; }
    }
    if ($low{$v} == $idx{$v}) {
        my @c;
        while (1) { my $w = pop @stack; $on{$w} = 0; push @c, $w; last if $w eq $v; }
        push @sccs, [sort @c] if @c > 1;
    }
}
my %nodes = map { $_ => 1 } (keys %edges, map { keys %$_ } values %edges);
for my $v (sort keys %nodes) { strong($v) unless exists $idx{$v}; }
for my $c (@sccs) {
    my %in = map { $_ => 1 } @$c;
    print "FAIL include cycle between modules: " . join(', ', @$c) . "\n";
    for my $a (@$c) {
        for my $b (sort keys %{$edges{$a}}) {
            next unless $in{$b};
            print "FAIL $_: $a -> $b (part of the cycle above)\n" for @{$edge_lines{"$a\t$b"}};
            $failed += @{$edge_lines{"$a\t$b"}};
        }
    }
}
$passed++ unless @sccs;
print "TOTAL $passed $failed\n";
PERL
}

if [ "${1:-}" = "--root" ]; then
  out=$(check "$2")
  grep -v '^TOTAL ' <<<"$out"
  read -r _ p f < <(grep '^TOTAL ' <<<"$out")
  [ "${f:-1}" -eq 0 ]
  exit $?
fi

out=$(check "$REPO")
grep -v '^TOTAL ' <<<"$out"
read -r _ passed failed < <(grep '^TOTAL ' <<<"$out")
passed=${passed:-0}
failed=${failed:-1}
echo "ok   $passed clean files and modules in service/ and include/"

# Self-test: exactly the planted lines are reported.
fixture=tests/lint/fixtures/arch
expect=$(cd "$fixture" && grep -rn 'ARCH-EXPECT-FAIL' --include='*.[ch]' . | cut -d: -f1,2 |
         sed 's|^\./||' | sort -u | tr '\n' ' ')
got=$(check "$REPO/$fixture" | sed -n 's/^FAIL \([^ :]*:[0-9]*\):.*/\1/p' | sort -u | tr '\n' ' ')
if [ -n "$expect" ] && [ "$expect" = "$got" ]; then
  echo "ok   self-test: every planted violation in $fixture is caught, and nothing else"
  passed=$((passed + 1))
else
  echo "FAIL self-test: $fixture plants [$expect], the check reported [$got]"
  check "$REPO/$fixture" | sed 's/^/     | /'
  failed=$((failed + 1))
fi

echo "arch: $passed passed, $failed failed"
mkdir -p build
echo "$passed $failed" >>build/test-results
[ "$failed" -eq 0 ]
