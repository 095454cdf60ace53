package netguard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "10.1.2.3": "private", "172.16.0.1": "private",
		"192.168.1.1": "private", "169.254.169.254": "cloud metadata", "169.254.1.1": "link-local", "fe80::1": "link-local",
		"0.0.0.0": "unspecified", "100.64.1.1": "reserved", "::ffff:127.0.0.1": "loopback",
		"fd00::1": "private", "8.8.8.8": "", "2001:4860:4860::8888": "", "20.50.2.1": "",
	} {
		if got := Classify(netip.MustParseAddr(addr)); got != want {
			t.Errorf("%s: got %q, want %q", addr, got, want)
		}
	}
}

// Every special-purpose range from the issue, checked with AllowPrivate off and on: the
// reason when refused ("" = allowed).
func TestCheckRanges(t *testing.T) {
	for _, c := range []struct {
		addr           string
		strict, opened string // reason with AllowPrivate false / true
	}{
		// "this network" 0.0.0.0/8
		{"0.0.0.0", "unspecified", "unspecified"},
		{"0.1.2.3", "unspecified", "unspecified"},
		// cloud metadata and platform endpoints: never
		{"169.254.169.254", "cloud metadata", "cloud metadata"},
		{"168.63.129.16", "cloud metadata", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata", "cloud metadata"},
		{"169.254.170.2", "cloud metadata", "cloud metadata"},
		{"::ffff:169.254.169.254", "cloud metadata", "cloud metadata"},
		{"::ffff:168.63.129.16", "cloud metadata", "cloud metadata"},
		{"::ffff:a9fe:a9fe", "cloud metadata", "cloud metadata"},
		{"fd00:ec2::254%eth0", "cloud metadata", "cloud metadata"},
		// the neighbours of 168.63.129.16 are ordinary public addresses
		{"168.63.129.17", "", ""},
		// IPv4-compatible ::/96 (deprecated), apart from :: and ::1
		{"::7f00:1", "IPv4-compatible", "IPv4-compatible"},
		{"::a9fe:a9fe", "IPv4-compatible", "IPv4-compatible"},
		{"::808:808", "IPv4-compatible", "IPv4-compatible"},
		{"::", "unspecified", "unspecified"},
		{"::1", "loopback", ""},
		// IPv4-mapped ::ffff:0:0/96: checked as the IPv4 address they carry
		{"::ffff:127.0.0.1", "loopback", ""},
		{"::ffff:10.0.0.1", "private", ""},
		{"::ffff:0.0.0.0", "unspecified", "unspecified"},
		{"::ffff:8.8.8.8", "", ""},
		// NAT64 64:ff9b::/96 and local-use 64:ff9b:1::/48: they embed any IPv4 address
		{"64:ff9b::7f00:1", "NAT64", "NAT64"},
		{"64:ff9b::a9fe:a9fe", "NAT64", "NAT64"},
		{"64:ff9b::808:808", "NAT64", "NAT64"},
		{"64:ff9b:1::a00:1", "NAT64", "NAT64"},
		// 6to4 2002::/16 and Teredo 2001::/32 embed IPv4 addresses too
		{"2002:7f00:1::1", "6to4", "6to4"},
		{"2002:a9fe:a9fe::1", "6to4", "6to4"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo", "Teredo"},
		{"2001::1", "Teredo", "Teredo"},
		// site-local fec0::/10 (deprecated)
		{"fec0::1", "site-local", "site-local"},
		// unique local fc00::/7 and link-local fe80::/10: AllowPrivate opens them
		{"fc00::1", "private", ""},
		{"fd12:3456::1", "private", ""},
		{"fe80::1", "link-local", ""},
		{"fe80::1%eth0", "link-local", ""},
		// IPv4 private, loopback, link-local: AllowPrivate opens them
		{"10.0.0.1", "private", ""},
		{"172.31.255.255", "private", ""},
		{"192.168.0.1", "private", ""},
		{"127.0.0.53", "loopback", ""},
		{"169.254.1.1", "link-local", ""},
		// shared address space, IETF assignments, benchmarking, reserved, broadcast: never
		{"100.64.0.1", "reserved", "reserved"},
		{"100.127.255.254", "reserved", "reserved"},
		{"192.0.0.8", "reserved", "reserved"},
		{"198.18.0.1", "reserved", "reserved"},
		{"198.19.255.254", "reserved", "reserved"},
		{"240.0.0.1", "reserved", "reserved"},
		{"255.255.255.255", "broadcast", "broadcast"},
		{"224.0.0.1", "multicast", "multicast"},
		{"ff02::1", "multicast", "multicast"},
		// documentation ranges, from the registries
		{"192.0.2.1", "special-purpose", "special-purpose"},
		{"2001:db8::1", "special-purpose", "special-purpose"},
		// public addresses
		{"8.8.8.8", "", ""},
		{"1.1.1.1", "", ""},
		{"20.50.2.1", "", ""},
		{"100.128.0.1", "", ""},
		{"2001:4860:4860::8888", "", ""},
		{"2606:4700:4700::1111", "", ""},
	} {
		ip := netip.MustParseAddr(c.addr)
		for _, allow := range []bool{false, true} {
			want := c.strict
			if allow {
				want = c.opened
			}
			got, always := Check(ip, allow)
			if got != want {
				t.Errorf("Check(%s, allowPrivate=%v) = %q, want %q", c.addr, allow, got, want)
			}
			if wantAlways := c.opened != ""; got != "" && always != wantAlways {
				t.Errorf("Check(%s, allowPrivate=%v): always = %v, want %v", c.addr, allow, always, wantAlways)
			}
			// The dial-time check agrees with Check.
			addr := netip.AddrPortFrom(ip, 443).String()
			network := "tcp6"
			if ip.Unmap().Is4() {
				network = "tcp4"
			}
			err := Control(allow)(network, addr, nil)
			var re *RefusedError
			if want == "" && err != nil || want != "" && (!errors.As(err, &re) || re.Reason != want) {
				t.Errorf("Control(%v)(%s): %v, want reason %q", allow, addr, err, want)
			}
		}
	}
}

func TestControlRefusesOtherNetworks(t *testing.T) {
	var re *RefusedError
	if err := Control(true)("udp4", "8.8.8.8:53", nil); !errors.As(err, &re) || !re.Always {
		t.Fatalf("udp: %v", err)
	}
	if err := Control(false)("tcp4", "nonsense", nil); !errors.As(err, &re) || re.Reason != "unparsable" {
		t.Fatalf("unparsable: %v", err)
	}
}

func TestClientRefusesLoopbackUnlessAllowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()
	_, err := Client(false, 5*time.Second).Get(srv.URL)
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != "loopback" {
		t.Fatalf("want loopback refusal, got %v", err)
	}
	resp, err := Client(true, 5*time.Second).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

// Through a real dial: the metadata endpoints are refused before a connection is made,
// also with AllowPrivate, in every spelling of the URL.
func TestClientRefusesMetadataEvenWhenPrivateAllowed(t *testing.T) {
	for _, u := range []string{
		"http://169.254.169.254/metadata/instance?api-version=2021-02-01",
		"http://[::ffff:169.254.169.254]/latest/meta-data/",
		"http://168.63.129.16/machine?comp=goalstate",
		"http://[::ffff:168.63.129.16]:32526/vmSettings",
		"http://[fd00:ec2::254]/latest/meta-data/",
	} {
		for _, allow := range []bool{false, true} {
			_, err := Client(allow, 5*time.Second).Get(u)
			var re *RefusedError
			if !errors.As(err, &re) || re.Reason != "cloud metadata" || !re.Always || !strings.Contains(err.Error(), "never allowed") {
				t.Errorf("%s (allowPrivate=%v): want a metadata refusal, got %v", u, allow, err)
			}
		}
	}
}

// A redirect from an allowed server to a refused address is refused at the second dial.
func TestClientChecksRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	}))
	defer srv.Close()
	_, err := Client(true, 5*time.Second).Get(srv.URL)
	var re *RefusedError
	if !errors.As(err, &re) || re.Reason != "cloud metadata" {
		t.Fatalf("want the redirect target refused, got %v", err)
	}
}
