#!/usr/bin/perl
# Verify the DKIM signatures of one message with Mail::DKIM, asking a given
# DNS server (address and port) for the keys.
#
# usage: mail_dkim_verify.pl --server 127.0.0.1 --port 5353 [--timeout 5] FILE
#        (FILE "-" or none: standard input)
#
# Prints JSON, one object per line:
#   {"type":"signature","result":"pass","detail":"pass","domain":"example.com",
#    "selector":"sel1","algorithm":"rsa-sha256","identity":"@example.com"}
#   ... one such line per signature, in the order they appear in the message ...
#   {"type":"message","result":"pass","detail":"pass","signatures":2}
# and exits 0 whatever the verdict; it exits 2 (with a message on standard
# error) only when it cannot run at all.
use strict;
use warnings;

use Getopt::Long qw(GetOptions);
use JSON::PP ();
use Mail::DKIM::DNS ();
use Mail::DKIM::Verifier ();
use Net::DNS::Resolver ();

my ( $server, $port, $timeout ) = ( undef, 53, 5 );
GetOptions(
    'server=s'  => \$server,
    'port=i'    => \$port,
    'timeout=i' => \$timeout,
) or usage();
usage() unless defined $server && @ARGV <= 1;
my $file = @ARGV ? $ARGV[0] : '-';

sub usage {
    print STDERR "usage: $0 --server ADDRESS [--port N] [--timeout S] [FILE]\n";
    exit 2;
}

my $resolver = Net::DNS::Resolver->new(
    nameservers => [$server],
    port        => $port,
    recurse     => 0,
    udp_timeout => $timeout,
    tcp_timeout => $timeout,
    retry       => 1,
    retrans     => 1,
) or die "cannot create a Net::DNS resolver\n";
Mail::DKIM::DNS::resolver($resolver);
$Mail::DKIM::DNS::TIMEOUT = $timeout + 1;

my $fh;
if ( $file eq '-' ) {
    $fh = \*STDIN;
}
else {
    open( $fh, '<', $file ) or do { print STDERR "cannot open $file: $!\n"; exit 2 };
}
binmode $fh;
my $data = do { local $/; <$fh> };
$data = '' unless defined $data;
$data =~ s/\015?\012/\015\012/g;    # Mail::DKIM wants CRLF line endings

my $dkim = Mail::DKIM::Verifier->new();
$dkim->PRINT($data);
$dkim->CLOSE();

my $json = JSON::PP->new->canonical(1)->utf8(1);
my $count = 0;
for my $sig ( $dkim->signatures ) {
    $count++;
    print $json->encode(
        {
            type      => 'signature',
            result    => text( $sig->result ),
            detail    => text( $sig->result_detail ),
            domain    => text( eval { $sig->domain } ),
            selector  => text( eval { $sig->selector } ),
            algorithm => text( eval { $sig->algorithm } ),
            identity  => text( eval { $sig->identity } ),
        }
    ), "\n";
}
print $json->encode(
    {
        type       => 'message',
        result     => text( $dkim->result ),
        detail     => text( $dkim->result_detail ),
        signatures => $count,
    }
), "\n";
exit 0;

sub text {
    my ($v) = @_;
    return defined $v ? "$v" : '';
}
