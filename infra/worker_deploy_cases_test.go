package infra

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests of worker_deploy_test.go's checks: each check holds for the files in deploy/
// and reports a copy weakened one way (so no check passes vacuously).

// mutation is one weakened copy: replace old by new in the file, and the check must report
// a violation containing want.
type mutation struct {
	name, file, old, new, want string
}

func (m mutation) apply(t *testing.T, files map[string][]byte) map[string][]byte {
	t.Helper()
	src, ok := files[m.file]
	if !ok {
		t.Fatalf("%s: no file %s", m.name, m.file)
	}
	weak := strings.Replace(string(src), m.old, m.new, 1)
	if weak == string(src) {
		t.Fatalf("%s: the mutation did not change %s; update the test", m.name, m.file)
	}
	out := map[string][]byte{}
	for k, v := range files {
		out[k] = v
	}
	out[m.file] = []byte(weak)
	return out
}

func requireViolation(t *testing.T, violations []string, want string) {
	t.Helper()
	for _, v := range violations {
		if strings.Contains(v, want) {
			return
		}
	}
	t.Errorf("no violation containing %q; all:\n  %s", want, strings.Join(violations, "\n  "))
}

func k8sViolations(t *testing.T, files map[string][]byte, e expectations) []string {
	t.Helper()
	s, problems := parseK8s(files)
	if s == nil {
		return problems
	}
	return append(problems, checkK8s(s, e)...)
}

func TestK8sManifests(t *testing.T) {
	e := loadExpectations(t)
	files := readDir(t, filepath.Join(deployDir, "k8s"))
	for _, v := range k8sViolations(t, files, e) {
		t.Error(v)
	}
	s, _ := parseK8s(files)
	t.Logf("checked %d objects of %d files; KEDA triggers must cover %v", len(s.objects), len(files), e.queues)
}

func TestK8sChecksCatchWeakenedManifests(t *testing.T) {
	e := loadExpectations(t)
	files := readDir(t, filepath.Join(deployDir, "k8s"))
	const trig = "    - type: azure-queue\n      name: jobs-low-poison\n"
	cases := []mutation{
		{"root", "deployment.yaml", "runAsNonRoot: true\n        runAsUser: 65532", "runAsNonRoot: true\n        runAsUser: 0", "runAsUser is 0"},
		{"non-root not required", "deployment.yaml", "            runAsNonRoot: true\n", "            runAsNonRoot: false\n", "runAsNonRoot is not true"},
		{"writable root", "deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"escalation", "deployment.yaml", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation"},
		{"capabilities kept", "deployment.yaml", "                - ALL\n", "                - NET_RAW\n", "capabilities.drop"},
		{"no memory limit", "deployment.yaml", "              memory: 512Mi\n", "", "limits.memory"},
		{"liveness on readyz", "deployment.yaml", "              path: /healthz", "              path: /readyz", "livenessProbe path"},
		{"readiness path", "deployment.yaml", "              path: /readyz", "              path: /ready", "readinessProbe path"},
		{"probe port", "deployment.yaml", "containerPort: 8080", "containerPort: 9090", "not the health port 8080"},
		{"short grace", "deployment.yaml", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 29", "terminationGracePeriodSeconds is 29s"},
		{"longer drain", "kustomization.yaml", "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT=25s", "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT=60s", "drain deadline 1m0s"},
		{"replicas fixed", "deployment.yaml", "  revisionHistoryLimit: 5\n", "  revisionHistoryLimit: 5\n  replicas: 2\n", "spec.replicas"},
		{"command override", "deployment.yaml", "          imagePullPolicy: IfNotPresent\n", "          imagePullPolicy: IfNotPresent\n          command: [\"/handler\"]\n", "overrides the image's"},
		{"no workload identity label", "deployment.yaml", "        azure.workload.identity/use: \"true\"\n", "", "azure.workload.identity/use"},
		{"no client id", "serviceaccount.yaml", "azure.workload.identity/client-id: \"00000000-0000-0000-0000-000000000000\"", "azure.workload.identity/client-id: \"\"", "client-id"},
		{"default service account", "deployment.yaml", "      serviceAccountName: nightshift-worker\n", "", "default service account"},
		{"no scale to zero", "scaledobject.yaml", "minReplicaCount: 0", "minReplicaCount: 1", "minReplicaCount is not 0"},
		{"queue not covered", "scaledobject.yaml", "queueName: jobs-high\n", "queueName: jobs-higher\n", "no azure-queue trigger for queue jobs-high"},
		{"wrong scaler", "scaledobject.yaml", trig, "    - type: azure-servicebus\n      name: jobs-low-poison\n", "type \"azure-servicebus\""},
		{"connection string", "scaledobject.yaml", "        queueName: jobs\n", "        queueName: jobs\n        connectionFromEnv: STORAGE\n", "connectionFromEnv is set"},
		{"no account", "kustomization.yaml", "fieldPath: data.AzureWebJobsStorage__accountName", "fieldPath: data.Other", "no accountName"},
		{"no auth ref", "scaledobject.yaml", "      authenticationRef:\n        name: nightshift-worker-queue-auth\n", "", "authenticationRef"},
		{"secret auth", "triggerauthentication.yaml", "  podIdentity:\n    provider: azure-workload\n", "  secretTargetRef:\n    - parameter: connection\n      name: storage\n      key: connection\n", "does not use podIdentity provider azure-workload"},
		{"connection string setting", "kustomization.yaml", "      - AZURE_TOKEN_CREDENTIALS=", "      - AzureWebJobsStorage=DefaultEndpointsProtocol=https;AccountName=a;AccountKey=eA==\n      - AZURE_TOKEN_CREDENTIALS=", "connection string"},
		{"inline webhook secret", "deployment.yaml", "              valueFrom:\n                secretKeyRef:\n                  name: nightshift-webhook-secrets\n                  key: NIGHTSHIFT_WEBHOOK_SECRETS\n                  optional: true\n", "              value: '{\"https://hooks.example.com\": \"s\"}'\n", "inline value"},
		{"setting missing", "kustomization.yaml", "      - NIGHTSHIFT_CALLBACK_QUEUES=\n", "", "NIGHTSHIFT_CALLBACK_QUEUES is not set"},
		{"SSRF guard off", "kustomization.yaml", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE=false", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE=true", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE"},
		{"default drifted", "kustomization.yaml", "NIGHTSHIFT_RETENTION_DAYS=14", "NIGHTSHIFT_RETENTION_DAYS=7", "NIGHTSHIFT_RETENTION_DAYS"},
		{"unlisted file", "kustomization.yaml", "  - scaledobject.yaml\n", "", "scaledobject.yaml is not listed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			requireViolation(t, k8sViolations(t, c.apply(t, files), e), c.want)
		})
	}
}

// TestK8sKustomizeBuild renders the kustomization with kubectl's built-in kustomize when
// kubectl is installed (the structural checks above do not need it): every resource
// resolves, the ConfigMap is generated and the account name reaches every trigger.
func TestK8sKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; the YAML checks of TestK8sManifests still ran")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubectl, "kustomize", filepath.Join(deployDir, "k8s")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	docs, err := parseYAMLDocs(out)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, d := range docs {
		var o k8sObject
		if err := d.Decode(&o); err != nil {
			t.Fatal(err)
		}
		kinds[o.Kind]++
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "ScaledObject", "TriggerAuthentication"} {
		if kinds[k] != 1 {
			t.Errorf("rendered %d %s objects, want 1", kinds[k], k)
		}
	}
	if strings.Contains(string(out), "set-by-kustomization") {
		t.Error("a trigger's accountName was not replaced from the settings ConfigMap")
	}
}

func TestDockerfile(t *testing.T) {
	src := string(readFile(t, filepath.Join(deployDir, "Dockerfile")))
	for _, v := range checkDockerfile(src) {
		t.Error(v)
	}
	for _, v := range checkDockerignore(string(readFile(t, filepath.Join(repoRoot, ".dockerignore")))) {
		t.Error(v)
	}
	cases := []struct{ name, old, new, want string }{
		{"one stage", "FROM golang:${GO_VERSION}-bookworm AS build\n", "", "multi-stage"},
		{"no static build", "CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o /out/handler ./handler", "go build -o /out/handler ./handler", "CGO_ENABLED=0"},
		{"cgo", "CGO_ENABLED=0 go build", "CGO_ENABLED=1 go build", "CGO_ENABLED=0"},
		{"root", "USER 65532:65532", "USER 0:0", "non-root uid"},
		{"named user", "USER 65532:65532", "USER nobody", "numeric"},
		{"shell entrypoint", `ENTRYPOINT ["/handler", "worker"]`, "ENTRYPOINT /handler worker", "exec form"},
		{"custom handler mode", `ENTRYPOINT ["/handler", "worker"]`, `ENTRYPOINT ["/handler"]`, "exec form"},
		{"registry host", "FROM golang:${GO_VERSION}-bookworm AS build", "FROM registry.example.com/golang:${GO_VERSION}-bookworm AS build", "registry host registry.example.com"},
		{"unpinned", "FROM golang:${GO_VERSION}-bookworm AS build", "FROM golang AS build", "not pinned"},
		{"latest", "FROM golang:${GO_VERSION}-bookworm AS build", "FROM golang:latest AS build", "not pinned"},
		{"fat final stage", "FROM scratch\n", "FROM golang:1.26.8-bookworm\n", "want scratch"},
		{"no certificates", "COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n", "", "CA certificates"},
		{"health port", "ENV NIGHTSHIFT_WORKER_HEALTH_ADDR=:8080", "ENV NIGHTSHIFT_WORKER_HEALTH_ADDR=:9090", "want port 8080"},
		{"host.json not copied", "COPY --from=build /src/host.json /host.json\n", "", "copies nothing there"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			weak := strings.Replace(src, c.old, c.new, 1)
			if weak == src {
				t.Fatal("the mutation did not change the Dockerfile")
			}
			requireViolation(t, checkDockerfile(weak), c.want)
		})
	}
	if v := checkDockerignore(".git\n"); len(v) == 0 {
		t.Error("a .dockerignore without local settings and dist passed")
	}
}

func TestSystemdUnit(t *testing.T) {
	dir := filepath.Join(deployDir, "systemd")
	unitSrc := string(readFile(t, filepath.Join(dir, "nightshift-worker.service")))
	envSrc := string(readFile(t, filepath.Join(dir, "worker.env")))
	e := loadExpectations(t)
	check := func(unit, env string) []string {
		u, problems := parseSystemdUnit(unit)
		vars := parseEnvFile(env)
		return append(append(problems, checkSystemdUnit(u, vars)...), checkWorkerSettings(vars, systemdWorkerExempt, e)...)
	}
	for _, v := range check(unitSrc, envSrc) {
		t.Error(v)
	}
	cases := []mutation{
		{"restart on failure only", "unit", "\nRestart=always\n", "\nRestart=on-failure\n", "want always"},
		{"short stop timeout", "unit", "TimeoutStopSec=40s", "TimeoutStopSec=20s", "TimeoutStopSec is 20s"},
		{"default stop timeout", "unit", "TimeoutStopSec=40s\n", "", "TimeoutStopSec"},
		{"longer drain", "env", "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT=25s", "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT=1m", "drain deadline 1m0s"},
		{"kill", "unit", "KillSignal=SIGTERM", "KillSignal=SIGKILL", "want SIGTERM"},
		{"root", "unit", "DynamicUser=yes\n", "", "runs as root"},
		{"no env file", "unit", "EnvironmentFile=/etc/nightshift/worker.env\n", "", "no EnvironmentFile"},
		{"not the worker", "unit", "ExecStart=/usr/local/bin/nightshift-handler worker", "ExecStart=/usr/local/bin/nightshift-handler", "ExecStart"},
		{"writable system", "unit", "ProtectSystem=strict", "ProtectSystem=full", "ProtectSystem"},
		{"capabilities", "unit", "CapabilityBoundingSet=\n", "CapabilityBoundingSet=CAP_NET_ADMIN\n", "CapabilityBoundingSet"},
		{"not enabled at boot", "unit", "WantedBy=multi-user.target", "WantedBy=default.target", "WantedBy"},
		{"connection string", "env", "AzureWebJobsStorage__credential=managedidentity\n", "AzureWebJobsStorage__credential=managedidentity\nAzureWebJobsStorage=DefaultEndpointsProtocol=https\n", "connection string"},
		{"setting missing", "env", "NIGHTSHIFT_CSV_CONTAINERS=\n", "", "NIGHTSHIFT_CSV_CONTAINERS is not set"},
		{"health port", "env", "NIGHTSHIFT_WORKER_HEALTH_ADDR=127.0.0.1:8080", "NIGHTSHIFT_WORKER_HEALTH_ADDR=127.0.0.1:9", "want port 8080"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := c.apply(t, map[string][]byte{"unit": []byte(unitSrc), "env": []byte(envSrc)})
			requireViolation(t, check(string(files["unit"]), string(files["env"])), c.want)
		})
	}
	for _, s := range []struct {
		in   string
		want time.Duration
	}{{"40", 40 * time.Second}, {"40s", 40 * time.Second}, {"1min 30s", 90 * time.Second}, {"2m", 2 * time.Minute}} {
		if got, err := parseSystemdTime(s.in); err != nil || got != s.want {
			t.Errorf("parseSystemdTime(%q) = %v, %v; want %v", s.in, got, err, s.want)
		}
	}
}

// TestSystemdVerify runs systemd-analyze verify on the unit (with ExecStart pointed at an
// existing binary) when systemd-analyze is installed: unknown keys, bad values and
// unsupported sandboxing options fail it.
func TestSystemdVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed; TestSystemdUnit's checks still ran")
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true binary")
	}
	src := string(readFile(t, filepath.Join(deployDir, "systemd", "nightshift-worker.service")))
	src = strings.Replace(src, "ExecStart=/usr/local/bin/nightshift-handler worker", "ExecStart="+truePath+" worker", 1)
	unit := filepath.Join(t.TempDir(), "nightshift-worker.service")
	if err := os.WriteFile(unit, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestWebJob(t *testing.T) {
	dir := filepath.Join(deployDir, "webjob")
	settingsJob := string(readFile(t, filepath.Join(dir, "settings.job")))
	runSh := string(readFile(t, filepath.Join(dir, "run.sh")))
	for _, v := range checkWebJob([]byte(settingsJob), runSh) {
		t.Error(v)
	}
	for _, script := range []string{"run.sh", "package.sh"} {
		out, err := exec.Command("sh", "-n", filepath.Join(dir, script)).CombinedOutput()
		if err != nil {
			t.Errorf("%s is not valid sh: %v\n%s", script, err, out)
		}
	}
	cases := []mutation{
		{"singleton", "settings.job", `"is_singleton": false`, `"is_singleton": true`, "is_singleton"},
		{"short wait", "settings.job", `"stopping_wait_time": 40`, `"stopping_wait_time": 5`, "stopping_wait_time is 5s"},
		{"triggered", "settings.job", `"is_singleton": false,`, `"is_singleton": false, "schedule": "0 * * * * *",`, "triggered"},
		{"no shutdown file", "run.sh", `[ -e "$WEBJOBS_SHUTDOWN_FILE" ]`, `false`, "WEBJOBS_SHUTDOWN_FILE"},
		{"not the worker", "run.sh", "./handler worker \"$@\" &", "./handler \"$@\" &", "./handler worker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := c.apply(t, map[string][]byte{"settings.job": []byte(settingsJob), "run.sh": []byte(runSh)})
			requireViolation(t, checkWebJob(files["settings.job"], string(files["run.sh"])), c.want)
		})
	}
}

// TestWebJobRunForwardsShutdown runs deploy/webjob/run.sh with a stand-in handler (a shell
// script recording its arguments and the SIGTERM it gets): App Service's shutdown file,
// and a SIGTERM to run.sh itself, each reach the worker as SIGTERM, and run.sh exits with
// the worker's status.
func TestWebJobRunForwardsShutdown(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	runSh := readFile(t, filepath.Join(deployDir, "webjob", "run.sh"))
	fake := "#!/bin/sh\n" +
		"d=$(dirname \"$0\")\n" +
		"echo \"$NIGHTSHIFT_WORKER_HOST_JSON\" > \"$d/hostjson\"\n" +
		"echo \"$*\" > \"$d/args.tmp\" && mv \"$d/args.tmp\" \"$d/args\"\n" +
		"trap 'echo term > \"$d/got\"; exit 0' TERM\n" +
		"while :; do sleep 1; done\n"
	for _, via := range []string{"shutdown file", "signal"} {
		t.Run(via, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "run.sh"), runSh, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "handler"), []byte(fake), 0o755); err != nil {
				t.Fatal(err)
			}
			shutdown := filepath.Join(dir, "shutdown")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, sh, filepath.Join(dir, "run.sh"), "--no-timers")
			cmd.Env = append(os.Environ(), "WEBJOBS_SHUTDOWN_FILE="+shutdown)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until the stand-in worker runs (its args file appears), then stop it.
			for {
				if b, err := os.ReadFile(filepath.Join(dir, "args")); err == nil {
					if got := strings.TrimSpace(string(b)); got != "worker --no-timers" {
						t.Errorf("handler args %q, want \"worker --no-timers\"", got)
					}
					break
				}
				if ctx.Err() != nil {
					t.Fatal("the stand-in worker never started")
				}
				time.Sleep(50 * time.Millisecond)
			}
			if via == "signal" {
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(shutdown, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("run.sh: %v (want exit 0, the worker's status)", err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "got")); err != nil || strings.TrimSpace(string(b)) != "term" {
				t.Errorf("the worker did not get SIGTERM (%v)", err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "hostjson")); strings.TrimSpace(string(b)) != filepath.Join(dir, "host.json") {
				t.Errorf("NIGHTSHIFT_WORKER_HOST_JSON = %q, want the job folder's host.json", strings.TrimSpace(string(b)))
			}
		})
	}
}
