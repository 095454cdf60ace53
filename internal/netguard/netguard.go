// Package netguard refuses outbound connections to non-public addresses (SSRF protection)
// for job kinds and webhooks that call URLs taken from job arguments. The check runs on
// the resolved IP at dial time (net.Dialer.Control), so DNS names that point inside the
// network, DNS rebinding and redirects to internal addresses are refused too.
//
// Which addresses are public is decided by code.dny.dev/ssrf, which follows the IANA
// special-purpose address registries for IPv4 and IPv6: everything in them is refused,
// and so is every IPv6 address outside global unicast 2000::/3 (IPv4-compatible ::/96,
// IPv4-mapped ::ffff:0:0/96 as IPv6, NAT64, site-local fec0::/10, unique local fc00::/7,
// link-local fe80::/10, multicast). Inside 2000::/3, 6to4 2002::/16 and Teredo 2001::/32
// are refused. IPv4-mapped addresses are checked as the IPv4 address they carry.
//
// AllowPrivate opens loopback, private (RFC 1918, unique local fc00::/7) and link-local
// ranges, for deployments that call internal services on purpose. It never opens the
// cloud metadata and platform endpoints, which hand out credentials and host
// configuration: 169.254.169.254 (instance metadata of Azure, AWS, GCP and others),
// fd00:ec2::254 (AWS IPv6 metadata), 169.254.170.2, 169.254.170.23 and fd00:ec2::23 (AWS
// container and pod credentials), 168.63.129.16 (Azure WireServer, a public-range address
// only reachable from inside Azure) and their IPv4-mapped forms; nor any other
// special-purpose range.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
)

// RefusedError reports a connection refused by the guard.
type RefusedError struct {
	// Addr is the address that was dialled (ip:port).
	Addr string
	// Reason names the kind of address, e.g. "loopback" or "cloud metadata".
	Reason string
	// Always is true when AllowPrivate does not open the address either.
	Always bool
}

func (e *RefusedError) Error() string {
	if e.Always {
		return fmt.Sprintf("refusing to connect to %s: %s address (never allowed)", e.Addr, e.Reason)
	}
	return fmt.Sprintf("refusing to connect to %s: %s address (allow it explicitly to call internal services)", e.Addr, e.Reason)
}

// metadataAddrs are the cloud metadata and platform endpoints that are refused even when
// private addresses are allowed: the instance metadata service of Azure, AWS, GCP and
// others (169.254.169.254, on AWS also fd00:ec2::254), the AWS container and pod
// credential endpoints (169.254.170.2, 169.254.170.23, fd00:ec2::23) and the Azure
// WireServer (168.63.129.16, a public-range address only reachable from inside Azure).
// Their IPv4-mapped IPv6 forms are refused as well.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("169.254.170.2"),
	netip.MustParseAddr("169.254.170.23"),
	netip.MustParseAddr("168.63.129.16"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("fd00:ec2::23"),
}

// openable are the ranges AllowPrivate opens: loopback, private and link-local.
var (
	openable4 = []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("169.254.0.0/16"),
	}
	openable6 = []netip.Prefix{
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("fc00::/7"),
		netip.MustParsePrefix("fe80::/10"),
	}
)

var (
	strict  = ssrf.New(ssrf.WithAnyPort())
	lenient = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAllowedV4Prefixes(openable4...), ssrf.WithAllowedV6Prefixes(openable6...))
)

func guardian(allowPrivate bool) *ssrf.Guardian {
	if allowPrivate {
		return lenient
	}
	return strict
}

// names give refused addresses a readable reason; the first match wins. Ranges not named
// here but refused by the registries are reported as "special-purpose".
var names = []struct {
	prefix netip.Prefix
	name   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("100.64.0.0/10"), "reserved"}, // carrier-grade NAT
	{netip.MustParsePrefix("192.0.0.0/24"), "reserved"},  // IETF protocol assignments
	{netip.MustParsePrefix("198.18.0.0/15"), "reserved"}, // benchmarking
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::/96"), "IPv4-compatible"},
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64"},
	{netip.MustParsePrefix("2002::/16"), "6to4"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("fc00::/7"), "private"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

func name(ip netip.Addr) string {
	for _, n := range names {
		if n.prefix.Contains(ip) {
			return n.name
		}
	}
	return "special-purpose"
}

// Check says why a connection to ip is refused ("" when it is allowed), and whether
// allowPrivate could not open it either. IPv4-mapped addresses are checked as IPv4.
func Check(ip netip.Addr, allowPrivate bool) (reason string, always bool) {
	ip = ip.Unmap().WithZone("")
	switch {
	case !ip.IsValid():
		return "invalid", true
	case slices.Contains(metadataAddrs, ip):
		return "cloud metadata", true
	case guardian(allowPrivate).SafeAddr(ip) == nil:
		return "", false
	}
	return name(ip), lenient.SafeAddr(ip) != nil
}

// Classify says why ip is not a public address ("" when it is public).
func Classify(ip netip.Addr) string {
	reason, _ := Check(ip, false)
	return reason
}

// Control returns a net.Dialer.Control function that refuses non-public addresses, or
// with allowPrivate only those that AllowPrivate does not open. Refusals are
// *RefusedError.
func Control(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	g := guardian(allowPrivate)
	return func(network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &RefusedError{Addr: address, Reason: "unparsable", Always: true}
		}
		if reason, always := Check(ap.Addr(), allowPrivate); reason != "" {
			return &RefusedError{Addr: address, Reason: reason, Always: always}
		}
		// The registries' own check on the dialled network and address (tcp4/tcp6 only).
		unmapped := netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).String()
		if err := g.Safe(network, unmapped, c); err != nil {
			if errors.Is(err, ssrf.ErrProhibitedNetwork) {
				return &RefusedError{Addr: address, Reason: "network " + network, Always: true}
			}
			return &RefusedError{Addr: address, Reason: name(ap.Addr().Unmap()), Always: true}
		}
		return nil
	}
}

// Dialer returns a dialer that refuses non-public addresses; allowPrivate opens loopback,
// private and link-local ranges but never the cloud metadata endpoints (see the package doc).
func Dialer(allowPrivate bool) *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: Control(allowPrivate)}
}

// Client returns an HTTP client whose connections go through Dialer(allowPrivate), with
// the given overall timeout. Redirects are followed at most 5 times and are checked by the
// same dialer.
func Client(allowPrivate bool, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // a proxy would dial on our behalf and bypass the check
	d := Dialer(allowPrivate)
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return fmt.Errorf("stopped after 5 redirects")
			}
			return nil
		},
	}
}
