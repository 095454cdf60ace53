// Package netguard refuses outbound connections to private, loopback, link-local and other
// non-public addresses (SSRF protection) for job kinds and webhooks that call URLs taken
// from job arguments. The check runs on the resolved IP at dial time, so DNS names that
// point inside the network are refused too.
package netguard

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// RefusedError reports a connection refused by the guard.
type RefusedError struct {
	Addr   string
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: %s address (allow it explicitly to call internal services)", e.Addr, e.Reason)
}

// Classify says why ip is not a public address ("" when it is public).
func Classify(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "invalid"
	case ip.IsLoopback():
		return "loopback"
	case ip.IsPrivate():
		return "private"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return "link-local"
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsMulticast() || ip.IsInterfaceLocalMulticast():
		return "multicast"
	}
	if ip.Is4() {
		for _, p := range blocked4 {
			if p.Contains(ip) {
				return "reserved"
			}
		}
	}
	return ""
}

var blocked4 = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// Dialer returns a dialer that refuses non-public addresses unless allowPrivate is true.
func Dialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if allowPrivate {
		return d
	}
	d.Control = func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &RefusedError{Addr: address, Reason: "unparsable"}
		}
		if why := Classify(ap.Addr()); why != "" {
			return &RefusedError{Addr: address, Reason: why}
		}
		return nil
	}
	return d
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
