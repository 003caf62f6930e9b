# The PSGI app of tools/demo-prefork-redis, served by Starlet's prefork workers.
#
# The same app as app.py: INCR a counter in Redis over the worker's one cached
# connection (opened on its first request, after the fork), answer with the pid and
# the count. A path ending in /leak opens a new connection per request and keeps it
# (never closed); /ping answers without Redis.
#
# Environment: DEMO_REDIS (host:port), DEMO_DELAY (seconds per request, default 0.01).
use strict;
use warnings;
use Redis;
use Time::HiRes ();

my $server = $ENV{DEMO_REDIS} or die "DEMO_REDIS is not set\n";
my $delay = $ENV{DEMO_DELAY} // 0.01;

my $cached;    # this worker's one connection; undef in the master, so never shared
my @leaked;    # leak mode: every connection opened, still referenced

sub connect_redis {
    my ($kind) = @_;
    return Redis->new(server => $server, name => "$kind:$$", reconnect => 0);
}

sub {
    my ($env) = @_;
    my $path = $env->{PATH_INFO} // '';
    my $body;
    if ($path =~ m{/ping\z}) {
        $body = "pong\n";
    } else {
        my $conn;
        if ($path =~ m{/leak\z}) {
            $conn = connect_redis('starlet-leak');
            push @leaked, $conn;
        } else {
            $conn = $cached //= connect_redis('starlet');
        }
        my $count = $conn->incr('demo:starlet');
        Time::HiRes::sleep($delay);
        $body = "starlet worker $$ count $count\n";
    }
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => length $body,
                  'X-Worker' => $$], [$body]];
};
