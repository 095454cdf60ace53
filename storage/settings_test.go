package storage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/nightshift-jobs/nightshift/internal/store/azure"
	"github.com/nightshift-jobs/nightshift/record"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

type fakeCred struct{}

func (fakeCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func TestFromEnvConnectionStrings(t *testing.T) {
	c, err := FromEnv(env(map[string]string{SettingStorage: "UseDevelopmentStorage=true"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.AccountName != "devstoreaccount1" || signs(c) != "shared-key" || !strings.HasPrefix(c.QueueURL, "http://127.0.0.1:10001/devstoreaccount1") {
		t.Fatalf("%+v %s", c, c.QueueURL)
	}
	c, err = FromEnv(env(map[string]string{SettingStorage: "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net", SettingNamePrefix: "blue"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.BlobURL != "https://acct.blob.core.windows.net/" || c.Layout.JobsQueue() != "blue-jobs" || c.Layout.StatusContainer() != "blue-nightshift-status" {
		t.Fatalf("%s %+v", c.BlobURL, c.Layout)
	}
	c, err = FromEnv(env(map[string]string{SettingStorage: "BlobEndpoint=https://a.blob.core.windows.net/;QueueEndpoint=https://a.queue.core.windows.net/;SharedAccessSignature=sv=2024&sig=x"}), nil)
	if err != nil || c.AccountName != "a" || signs(c) == "shared-key" {
		t.Fatalf("%+v %v", c, err)
	}
}

func TestFromEnvErrorsNameTheSetting(t *testing.T) {
	cases := []struct {
		env     map[string]string
		setting string
		want    string
	}{
		{map[string]string{}, SettingStorage, "give a connection string"},
		{map[string]string{SettingStorage: "nonsense"}, SettingStorage, "is not Key=Value"},
		{map[string]string{SettingStorage: "AccountName=a"}, SettingStorage, "neither AccountKey nor SharedAccessSignature"},
		{map[string]string{SettingStorage: "AccountName=a;AccountKey=!!!"}, SettingStorage, "not valid base64"},
		{map[string]string{SettingStorage: "AccountKey=a2V5;QueueEndpoint=http://q/;BlobEndpoint=nope"}, SettingStorage, "is not an absolute URL"},
		{map[string]string{SettingStorage: "AccountKey=a2V5;BlobEndpoint=http://b/"}, SettingStorage, "needs AccountName or QueueEndpoint"},
		{map[string]string{SettingStorage: "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://x"}, SettingStorage, "not supported"},
		{map[string]string{SettingQueueServiceURI: "https://a.queue.core.windows.net"}, SettingStorage, "__blobServiceUri"},
		{map[string]string{SettingAccountName: "a", SettingBlobServiceURI: "http://a"}, SettingBlobServiceURI, "not an https URL"},
		{map[string]string{SettingAccountName: "a", SettingCredential: "password"}, SettingCredential, "not supported"},
		{map[string]string{SettingStorage: "UseDevelopmentStorage=true", SettingNamePrefix: "Bad_Prefix"}, SettingNamePrefix, "lowercase"},
	}
	for _, c := range cases {
		_, err := FromEnv(env(c.env), nil)
		var se *SettingError
		if !errors.As(err, &se) || se.Setting != c.setting || !strings.Contains(se.Problem, c.want) {
			t.Errorf("%v: got %v; want %s containing %q", c.env, err, c.setting, c.want)
		}
		if strings.Contains(err.Error(), "!!!") || strings.Contains(err.Error(), "a2V5") {
			t.Errorf("error leaks a key: %v", err)
		}
	}
}

func TestFromEnvIdentity(t *testing.T) {
	c, err := FromEnv(env(map[string]string{SettingAccountName: "prodacct", SettingCredential: "managedidentity", SettingClientID: "00000000-0000-0000-0000-000000000001"}), &Options{Credential: fakeCred{}})
	if err != nil {
		t.Fatal(err)
	}
	if c.QueueURL != "https://prodacct.queue.core.windows.net/" || c.token == nil || signs(c) == "shared-key" || c.AccountName != "prodacct" {
		t.Fatalf("%+v", c)
	}
	c, err = FromEnv(env(map[string]string{SettingQueueServiceURI: "https://q.example/", SettingBlobServiceURI: "https://acct2.blob.core.windows.net/"}), &Options{Credential: fakeCred{}})
	if err != nil || c.AccountName != "acct2" {
		t.Fatalf("%+v %v", c, err)
	}
	// Without an injected credential, managedidentity builds azidentity's credential.
	if _, err := FromEnv(env(map[string]string{SettingAccountName: "a", SettingCredential: "managedidentity"}), nil); err != nil {
		t.Fatal(err)
	}
}

func TestLayout(t *testing.T) {
	var l Layout
	if got := l.Queues(); len(got) != 6 || got[2] != "jobs" || got[3] != "jobs-poison" || got[0] != "jobs-high" || got[5] != "jobs-low-poison" {
		t.Fatal(got)
	}
	for _, n := range append(l.Queues(), l.Containers()...) {
		if p := ValidQueueName(n); p != "" {
			t.Errorf("%s: %s", n, p)
		}
	}
	l, _ = NewLayout("a-1")
	for _, n := range append(l.Queues(), l.Containers()...) {
		if !strings.HasPrefix(n, "a-1-") || ValidQueueName(n) != "" {
			t.Errorf("prefixed name %s", n)
		}
	}
	for _, bad := range []string{"-a", "a-", "a--b", "UPPER", strings.Repeat("a", 21)} {
		if _, err := NewLayout(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
	for name, want := range map[string]string{"ab": "3–63", "a--b": "consecutive", "-ab": "start or end", "aBc": "lowercase"} {
		if got := ValidQueueName(name); !strings.Contains(got, want) {
			t.Errorf("%s: %q", name, got)
		}
	}
}

func TestSupersedesNeverGoesBackwards(t *testing.T) {
	st := func(replay, attempt int, s record.State) *record.Status {
		return &record.Status{Replay: replay, Attempt: attempt, State: s}
	}
	cases := []struct {
		next, cur *record.Status
		want      bool
	}{
		{st(0, 1, record.StateRunning), nil, true},
		{st(0, 1, record.StateSucceeded), st(0, 1, record.StateRunning), true},
		{st(0, 1, record.StateRunning), st(0, 1, record.StateSucceeded), false},
		{st(0, 1, record.StateSucceeded), st(0, 1, record.StateSucceeded), false},
		{st(0, 1, record.StateRunning), st(0, 1, record.StateRunning), true},
		{st(0, 2, record.StateRunning), st(0, 1, record.StateRetrying), true},
		{st(0, 1, record.StateRetrying), st(0, 2, record.StateRunning), false},
		{st(0, 1, record.StateCancelled), st(0, 1, record.StateRunning), true},
		{st(0, 1, record.StateSucceeded), st(0, 1, record.StateCancelled), false},
		{st(0, 0, record.StateCancelled), st(0, 0, record.StateQueued), true},
		{st(1, 1, record.StateQueued), st(0, 3, record.StateDead), true},
		{st(0, 3, record.StateDead), st(1, 1, record.StateQueued), false},
		// A terminal state is final for its life, whatever attempt comes later.
		{st(0, 2, record.StateRunning), st(0, 1, record.StateCancelled), false},
		{st(0, 4, record.StateRetrying), st(0, 3, record.StateDead), false},
		{st(1, 1, record.StateRunning), st(0, 1, record.StateCancelled), true},
	}
	for i, c := range cases {
		if got := c.next.Supersedes(c.cur); got != c.want {
			t.Errorf("case %d: %+v over %+v = %v", i, c.next, c.cur, got)
		}
	}
}

func TestAppendLogsBounded(t *testing.T) {
	var s record.Status
	for i := 0; i < record.MaxLogLines+10; i++ {
		s.AppendLogs(record.LogLine{Message: strings.Repeat("x", record.MaxLogLineBytes+50)})
	}
	if len(s.Logs) != record.MaxLogLines || s.LogsDropped != 10 || len(s.Logs[0].Message) > record.MaxLogLineBytes+len("…") {
		t.Fatalf("%d %d %d", len(s.Logs), s.LogsDropped, len(s.Logs[0].Message))
	}
}

// signs says how the clients' Azure driver signs read links.
func signs(c *Clients) string { return c.store.(*azure.Store).SignsWith() }
