package infra

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nightshift-jobs/nightshift/storage"
)

// Offline checks of the worker-mode deployment artifacts under deploy/ (docs/deploy-worker.md):
// the Kubernetes manifests (parsed as YAML), the Dockerfile, the systemd unit and the
// WebJob files, each against the worker-mode contract (health paths and port, drain
// deadline, restart rules) and the layout and settings of the Go code, like the policies of
// policy_test.go check main.bicep. Each check is a function returning violations; the
// tests run it on the real files and on copies weakened one way each.

const (
	deployDir = "../deploy"

	// The worker-mode contract (helper-common "Worker-mode contract", docs/worker.md).
	workerHealthPort   = 8080
	workerLivenessPath = "/healthz"
	workerReadyPath    = "/readyz"
	workerDrainDefault = 25 * time.Second
	// A platform's stop deadline must exceed the drain deadline by at least this much: the
	// release of jobs still running at the deadline and the exit take time too.
	workerStopMargin = 5 * time.Second

	settingWorkerDrainTimeout = "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT"
	settingWorkerHealthAddr   = "NIGHTSHIFT_WORKER_HEALTH_ADDR"
	settingWorkerHostJSON     = "NIGHTSHIFT_WORKER_HOST_JSON"
	settingWorkerTimers       = "NIGHTSHIFT_WORKER_TIMERS"
)

// workerOptionalSettings are settings every worker target may leave unset, with the reason:
// the Functions host's own settings, and the worker flags whose defaults fit every target.
var workerOptionalSettings = map[string]string{
	settingAppInsightsConnection:     "read by the Functions host only; the worker logs JSON to stdout, which the platform collects",
	settingAppInsightsAuthentication: "read by the Functions host only",
	"NIGHTSHIFT_WORKER_CONCURRENCY":  "default: host.json's batchSize + newBatchThreshold per queue, like the host",
	"NIGHTSHIFT_WORKER_QUEUES":       "default: every job queue and its poison queue, which the scale rules cover",
	"NIGHTSHIFT_WORKER_TIMERS":       "default: on, under the singleton lease (one firing per fleet)",
	"NIGHTSHIFT_WORKER_HOST_JSON":    "default: the worker's built-in copy of the repository's host.json; the image sets it to its /host.json",
}

// checkWorkerSettings: a worker target sets every setting the function app gets (the Go
// code's Setting* constants, as for main.bicep), except workerOptionalSettings and the
// target's own exemptions; storage by account name or by both service URIs, never by
// connection string; the SSRF guards pinned off; literal values equal to the code's
// defaults (the worker's own NIGHTSHIFT_WORKER_* settings are deployment choices: a VM's
// health address is loopback); the drain deadline and health address, if set, as the
// contract allows.
func checkWorkerSettings(got map[string]string, exempt map[string]string, e expectations) []string {
	var out []string
	_, byName := got[storage.SettingAccountName]
	_, blob := got[storage.SettingBlobServiceURI]
	_, queue := got[storage.SettingQueueServiceURI]
	if !byName && !(blob && queue) {
		out = append(out, fmt.Sprintf("storage: set %s, or both %s and %s", storage.SettingAccountName, storage.SettingBlobServiceURI, storage.SettingQueueServiceURI))
	}
	for _, want := range e.settings {
		_, optional := workerOptionalSettings[want]
		_, skip := exempt[want]
		uri := want == storage.SettingBlobServiceURI || want == storage.SettingQueueServiceURI
		if _, ok := got[want]; !ok && !optional && !skip && !(uri && byName) {
			out = append(out, "setting "+want+" is not set")
		}
	}
	if _, ok := got[storage.SettingStorage]; ok {
		out = append(out, storage.SettingStorage+" (a connection string) is set; use the identity-based settings")
	}
	for name, want := range pinnedSettingValues {
		if v, ok := got[name]; ok && v != strings.Trim(want, "'") {
			out = append(out, fmt.Sprintf("setting %s is %q, want %s", name, v, want))
		}
	}
	for name, def := range e.defaults {
		if v, ok := got[name]; ok && v != def && !strings.HasPrefix(v, "<") && !strings.HasPrefix(name, "NIGHTSHIFT_WORKER_") {
			out = append(out, fmt.Sprintf("setting %s is %q but the code's Default constant is %q", name, v, def))
		}
	}
	if v, ok := got[settingWorkerHealthAddr]; ok && !strings.HasSuffix(v, ":"+strconv.Itoa(workerHealthPort)) {
		out = append(out, fmt.Sprintf("setting %s is %q, want port %d (the probes use it)", settingWorkerHealthAddr, v, workerHealthPort))
	}
	if v, ok := got[settingWorkerDrainTimeout]; ok {
		if _, err := time.ParseDuration(v); err != nil {
			out = append(out, fmt.Sprintf("setting %s is %q: %v", settingWorkerDrainTimeout, v, err))
		}
	}
	return out
}

// drainOf returns the drain deadline the settings give the worker (the contract's default
// when unset or unparsable; checkWorkerSettings reports the latter).
func drainOf(settings map[string]string) time.Duration {
	if d, err := time.ParseDuration(settings[settingWorkerDrainTimeout]); err == nil {
		return d
	}
	return workerDrainDefault
}

// checkStopDeadline: a platform's stop deadline leaves the worker its drain and a margin.
func checkStopDeadline(what string, stop, drain time.Duration) []string {
	if stop < drain+workerStopMargin {
		return []string{fmt.Sprintf("%s is %v, want at least the drain deadline %v plus %v", what, stop, drain, workerStopMargin)}
	}
	return nil
}

// ---------------------------------------------------------------------------------------
// Kubernetes (deploy/k8s)
// ---------------------------------------------------------------------------------------

type k8sMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// k8sObject is one YAML document of a manifest.
type k8sObject struct {
	APIVersion string  `yaml:"apiVersion"`
	Kind       string  `yaml:"kind"`
	Metadata   k8sMeta `yaml:"metadata"`
	file       string
	node       *yaml.Node
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string         `yaml:"name"`
		Value     *string        `yaml:"value"`
		ValueFrom map[string]any `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		Privileged               *bool  `yaml:"privileged"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sDeployment struct {
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Template struct {
			Metadata k8sMeta `yaml:"metadata"`
			Spec     struct {
				ServiceAccountName            string `yaml:"serviceAccountName"`
				TerminationGracePeriodSeconds *int64 `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
					RunAsUser    *int64 `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type kedaTrigger struct {
	Type              string            `yaml:"type"`
	Name              string            `yaml:"name"`
	Metadata          map[string]string `yaml:"metadata"`
	AuthenticationRef *struct {
		Name string `yaml:"name"`
		Kind string `yaml:"kind"`
	} `yaml:"authenticationRef"`
}

type kedaScaledObject struct {
	Spec struct {
		ScaleTargetRef struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount *int          `yaml:"minReplicaCount"`
		MaxReplicaCount *int          `yaml:"maxReplicaCount"`
		Triggers        []kedaTrigger `yaml:"triggers"`
	} `yaml:"spec"`
}

type kedaTriggerAuthentication struct {
	Spec struct {
		PodIdentity *struct {
			Provider string `yaml:"provider"`
		} `yaml:"podIdentity"`
		SecretTargetRef []any `yaml:"secretTargetRef"`
		Env             []any `yaml:"env"`
		AzureKeyVault   any   `yaml:"azureKeyVault"`
	} `yaml:"spec"`
}

type kustomization struct {
	Namespace          string   `yaml:"namespace"`
	Resources          []string `yaml:"resources"`
	ConfigMapGenerator []struct {
		Name     string   `yaml:"name"`
		Literals []string `yaml:"literals"`
	} `yaml:"configMapGenerator"`
	Replacements []struct {
		Source struct {
			Kind      string `yaml:"kind"`
			Name      string `yaml:"name"`
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"source"`
		Targets []struct {
			Select struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"select"`
			FieldPaths []string `yaml:"fieldPaths"`
		} `yaml:"targets"`
	} `yaml:"replacements"`
}

// k8sSet is the parsed deploy/k8s directory: the kustomization and every object of the
// files it lists.
type k8sSet struct {
	kust    kustomization
	objects []k8sObject
}

// parseYAMLDocs splits a multi-document YAML file into its documents.
func parseYAMLDocs(src []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(src)))
	var out []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, &n)
	}
}

// parseK8s parses a kustomization and the files it lists (files maps a file name to its
// content; the tests pass weakened copies through it).
func parseK8s(files map[string][]byte) (*k8sSet, []string) {
	var out []string
	raw, ok := files["kustomization.yaml"]
	if !ok {
		return nil, []string{"no kustomization.yaml"}
	}
	s := &k8sSet{}
	if err := yaml.Unmarshal(raw, &s.kust); err != nil {
		return nil, []string{"kustomization.yaml: " + err.Error()}
	}
	for name := range files {
		if name != "kustomization.yaml" && !slices.Contains(s.kust.Resources, name) {
			out = append(out, name+" is not listed in kustomization.yaml resources")
		}
	}
	for _, name := range s.kust.Resources {
		src, ok := files[name]
		if !ok {
			out = append(out, "kustomization.yaml lists "+name+", which does not exist")
			continue
		}
		docs, err := parseYAMLDocs(src)
		if err != nil {
			out = append(out, name+": "+err.Error())
			continue
		}
		for _, d := range docs {
			var o k8sObject
			if err := d.Decode(&o); err != nil {
				out = append(out, name+": "+err.Error())
				continue
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				out = append(out, fmt.Sprintf("%s: a document without apiVersion, kind or metadata.name", name))
				continue
			}
			o.file, o.node = name, d
			s.objects = append(s.objects, o)
		}
	}
	return s, out
}

// ofKind returns the objects of a kind.
func (s *k8sSet) ofKind(kind string) []k8sObject {
	var out []k8sObject
	for _, o := range s.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// configMapLiterals returns the literals of a configMapGenerator entry as settings.
func (s *k8sSet) configMapLiterals(name string) (map[string]string, bool) {
	for _, g := range s.kust.ConfigMapGenerator {
		if g.Name != name {
			continue
		}
		m := map[string]string{}
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			m[k] = v
		}
		return m, true
	}
	return nil, false
}

// k8sWorkerExempt are the settings the Kubernetes worker leaves unset, with the reason.
var k8sWorkerExempt = map[string]string{
	storage.SettingCredential: "empty: azidentity's default chain, which takes the workload identity the AKS webhook injects",
	storage.SettingClientID:   "only read with credential=managedidentity; the workload identity's client id is the service account annotation",
	settingAzureClientID:      "injected by the workload identity webhook from the service account annotation",
}

// checkK8s runs every Kubernetes check.
func checkK8s(s *k8sSet, e expectations) []string {
	deployments := s.ofKind("Deployment")
	if len(deployments) != 1 {
		return []string{fmt.Sprintf("want exactly one Deployment, found %d", len(deployments))}
	}
	var d k8sDeployment
	if err := deployments[0].node.Decode(&d); err != nil {
		return []string{"Deployment: " + err.Error()}
	}
	out := checkK8sDeployment(s, &d, e)
	out = append(out, checkK8sIdentity(s, &d)...)
	out = append(out, checkKEDA(s, deployments[0].Metadata.Name, e)...)
	return append(out, checkK8sNoSecrets(s)...)
}

// checkK8sDeployment: one container running `worker`, non-root, read-only root file
// system, no privilege escalation, all capabilities dropped, resources, liveness on
// /healthz and readiness on /readyz at the contract's port, a grace period that covers the
// drain, the function app's settings, no replicas field (KEDA owns the count).
func checkK8sDeployment(s *k8sSet, d *k8sDeployment, e expectations) []string {
	var out []string
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas != nil {
		out = append(out, "Deployment sets spec.replicas: the ScaledObject owns the replica count (a re-apply would fight the HPA)")
	}
	if len(pod.Containers) != 1 {
		return append(out, fmt.Sprintf("want one container, found %d", len(pod.Containers)))
	}
	c := pod.Containers[0]
	if len(c.Command) > 0 {
		out = append(out, fmt.Sprintf("container %s overrides the image's `handler worker` entry point with %v (args may add flags)", c.Name, c.Command))
	}
	// A container's security context overrides the pod's.
	nonRoot, uid := c.SecurityContext.RunAsNonRoot, c.SecurityContext.RunAsUser
	if nonRoot == nil {
		nonRoot = pod.SecurityContext.RunAsNonRoot
	}
	if uid == nil {
		uid = pod.SecurityContext.RunAsUser
	}
	if !isTrue(nonRoot) {
		out = append(out, "runAsNonRoot is not true for the container")
	}
	if uid != nil && *uid == 0 {
		out = append(out, "runAsUser is 0 (root)")
	}
	if !isTrue(c.SecurityContext.ReadOnlyRootFilesystem) {
		out = append(out, "readOnlyRootFilesystem is not true")
	}
	if c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		out = append(out, "allowPrivilegeEscalation is not false")
	}
	if isTrue(c.SecurityContext.Privileged) {
		out = append(out, "privileged is true")
	}
	if !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") {
		out = append(out, "capabilities.drop does not contain ALL")
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			out = append(out, "resources.requests."+r+" is not set")
		}
	}
	if c.Resources.Limits["memory"] == "" {
		out = append(out, "resources.limits.memory is not set")
	}
	out = append(out, checkK8sProbe(c, "livenessProbe", c.LivenessProbe, workerLivenessPath)...)
	out = append(out, checkK8sProbe(c, "readinessProbe", c.ReadinessProbe, workerReadyPath)...)

	settings := map[string]string{}
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			continue
		}
		lits, ok := s.configMapLiterals(ef.ConfigMapRef.Name)
		if !ok {
			out = append(out, "envFrom names ConfigMap "+ef.ConfigMapRef.Name+", which kustomization.yaml does not generate")
		}
		for k, v := range lits {
			settings[k] = v
		}
	}
	for _, ev := range c.Env {
		switch {
		case ev.Value != nil:
			settings[ev.Name] = *ev.Value
		default:
			settings[ev.Name] = "<from " + fmt.Sprint(ev.ValueFrom) + ">"
		}
	}
	out = append(out, checkWorkerSettings(settings, k8sWorkerExempt, e)...)
	if pod.TerminationGracePeriodSeconds == nil {
		out = append(out, "terminationGracePeriodSeconds is not set")
	} else {
		out = append(out, checkStopDeadline("terminationGracePeriodSeconds", time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second, drainOf(settings))...)
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }

// checkK8sProbe: an HTTP probe on path at the contract's health port (a port number, or
// the name of a container port with that number).
func checkK8sProbe(c k8sContainer, what string, p *k8sProbe, path string) []string {
	if p == nil || p.HTTPGet == nil {
		return []string{what + " is not an httpGet probe"}
	}
	var out []string
	if p.HTTPGet.Path != path {
		out = append(out, fmt.Sprintf("%s path is %q, want %s", what, p.HTTPGet.Path, path))
	}
	port := -1
	switch v := p.HTTPGet.Port.(type) {
	case int:
		port = v
	case string:
		for _, cp := range c.Ports {
			if cp.Name == v {
				port = cp.ContainerPort
			}
		}
	}
	if port != workerHealthPort {
		out = append(out, fmt.Sprintf("%s port %v is not the health port %d", what, p.HTTPGet.Port, workerHealthPort))
	}
	return out
}

var guidOnlyRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkK8sIdentity: the pods use a service account of the set that carries the workload
// identity client-id annotation, and the pod template has the azure.workload.identity/use
// label the webhook selects pods by.
func checkK8sIdentity(s *k8sSet, d *k8sDeployment) []string {
	var out []string
	if d.Spec.Template.Metadata.Labels["azure.workload.identity/use"] != "true" {
		out = append(out, "pod template lacks the label azure.workload.identity/use: \"true\"")
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" || sa == "default" {
		return append(out, "the pods run as the namespace's default service account")
	}
	i := slices.IndexFunc(s.ofKind("ServiceAccount"), func(o k8sObject) bool { return o.Metadata.Name == sa })
	if i < 0 {
		return append(out, "service account "+sa+" is not in the manifests")
	}
	if id := s.ofKind("ServiceAccount")[i].Metadata.Annotations["azure.workload.identity/client-id"]; !guidOnlyRE.MatchString(id) {
		out = append(out, fmt.Sprintf("service account %s: annotation azure.workload.identity/client-id is %q, want a client id (GUID)", sa, id))
	}
	return out
}

// checkKEDA: one ScaledObject on the Deployment with minReplicaCount 0, and an azure-queue
// trigger for every queue of storage.Layout (job queues and their poison queues), each with
// a positive queueLength target, the account name (literal or from the settings ConfigMap
// through a kustomize replacement), a cloud, no connection string, and a
// TriggerAuthentication of the set using the azure-workload pod identity provider.
func checkKEDA(s *k8sSet, deployment string, e expectations) []string {
	sos := s.ofKind("ScaledObject")
	if len(sos) != 1 {
		return []string{fmt.Sprintf("want exactly one ScaledObject (KEDA allows one per scale target), found %d", len(sos))}
	}
	var so kedaScaledObject
	if err := sos[0].node.Decode(&so); err != nil {
		return []string{"ScaledObject: " + err.Error()}
	}
	var out []string
	if so.Spec.ScaleTargetRef.Name != deployment || (so.Spec.ScaleTargetRef.Kind != "" && so.Spec.ScaleTargetRef.Kind != "Deployment") {
		out = append(out, fmt.Sprintf("ScaledObject targets %s %q, want the Deployment %q", so.Spec.ScaleTargetRef.Kind, so.Spec.ScaleTargetRef.Name, deployment))
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 0 {
		out = append(out, "ScaledObject minReplicaCount is not 0 (scale to zero)")
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 1 {
		out = append(out, "ScaledObject maxReplicaCount is not set")
	}
	auths := map[string]bool{}
	for _, o := range s.ofKind("TriggerAuthentication") {
		var ta kedaTriggerAuthentication
		if err := o.node.Decode(&ta); err != nil {
			out = append(out, "TriggerAuthentication "+o.Metadata.Name+": "+err.Error())
			continue
		}
		switch {
		case ta.Spec.PodIdentity == nil || ta.Spec.PodIdentity.Provider != "azure-workload":
			out = append(out, "TriggerAuthentication "+o.Metadata.Name+" does not use podIdentity provider azure-workload")
		case len(ta.Spec.SecretTargetRef) > 0 || len(ta.Spec.Env) > 0 || ta.Spec.AzureKeyVault != nil:
			out = append(out, "TriggerAuthentication "+o.Metadata.Name+" also reads secrets")
		default:
			auths[o.Metadata.Name] = true
		}
	}
	replaced := s.replacesAccountName(sos[0].Metadata.Name)
	covered := map[string]bool{}
	for i, t := range so.Spec.Triggers {
		where := fmt.Sprintf("trigger %d (%s)", i, t.Metadata["queueName"])
		if t.Type != "azure-queue" {
			out = append(out, fmt.Sprintf("%s: type %q, want azure-queue", where, t.Type))
			continue
		}
		covered[t.Metadata["queueName"]] = true
		if n, err := strconv.Atoi(t.Metadata["queueLength"]); err != nil || n < 1 {
			out = append(out, where+": queueLength is not a positive target")
		}
		if t.Metadata["accountName"] == "" || (!replaced && t.Metadata["accountName"] == "set-by-kustomization") {
			out = append(out, where+": no accountName (identity-based auth needs it)")
		}
		if t.Metadata["cloud"] == "" {
			out = append(out, where+": no cloud")
		}
		for _, k := range []string{"connection", "connectionFromEnv"} {
			if _, ok := t.Metadata[k]; ok {
				out = append(out, where+": metadata."+k+" is set: use the identity-based TriggerAuthentication")
			}
		}
		if t.AuthenticationRef == nil || !auths[t.AuthenticationRef.Name] || (t.AuthenticationRef.Kind != "" && t.AuthenticationRef.Kind != "TriggerAuthentication") {
			out = append(out, where+": authenticationRef does not name an azure-workload TriggerAuthentication of the manifests")
		}
	}
	for _, q := range e.queues {
		if !covered[q] {
			out = append(out, "no azure-queue trigger for queue "+q+" (storage.Layout)")
		}
	}
	for q := range covered {
		if !slices.Contains(e.queues, q) {
			out = append(out, "trigger for queue "+q+", which storage.Layout does not have")
		}
	}
	return out
}

// replacesAccountName reports whether a kustomize replacement fills every trigger's
// accountName of the ScaledObject from the account-name setting of a generated ConfigMap.
func (s *k8sSet) replacesAccountName(scaledObject string) bool {
	for _, r := range s.kust.Replacements {
		if r.Source.Kind != "ConfigMap" || r.Source.FieldPath != "data."+storage.SettingAccountName {
			continue
		}
		if _, ok := s.configMapLiterals(r.Source.Name); !ok {
			continue
		}
		for _, t := range r.Targets {
			if t.Select.Kind == "ScaledObject" && t.Select.Name == scaledObject && slices.Contains(t.FieldPaths, "spec.triggers.*.metadata.accountName") {
				return true
			}
		}
	}
	return false
}

var inlineSecretRE = regexp.MustCompile(`(?i)AccountKey=|SharedAccessSignature=|DefaultEndpointsProtocol=|[?&]sig=|-----BEGIN|InstrumentationKey=|client_secret`)
var secretNameRE = regexp.MustCompile(`(?i)(SECRET|PASSWORD|TOKEN$|_KEY$|^KEY$|CONNECTION)`)

// checkK8sNoSecrets: no Secret object, no connection string, key or SAS anywhere in the
// manifests or the generated ConfigMap, and no secret-named environment value inline.
func checkK8sNoSecrets(s *k8sSet) []string {
	var out []string
	for _, o := range s.objects {
		if o.Kind == "Secret" {
			out = append(out, o.file+": a Secret in the manifests (create it out of band or sync it from Key Vault)")
		}
		walkYAML(o.node, func(v string) {
			if inlineSecretRE.MatchString(v) {
				out = append(out, fmt.Sprintf("%s: a connection string, key or SAS inline: %q", o.file, v))
			}
		})
		if o.Kind == "Deployment" {
			var d k8sDeployment
			_ = o.node.Decode(&d)
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, ev := range c.Env {
					if ev.Value != nil && *ev.Value != "" && secretNameRE.MatchString(ev.Name) {
						out = append(out, fmt.Sprintf("%s: env %s has an inline value; reference a Secret", o.file, ev.Name))
					}
				}
			}
		}
	}
	for _, g := range s.kust.ConfigMapGenerator {
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			if inlineSecretRE.MatchString(l) || (v != "" && secretNameRE.MatchString(k)) {
				out = append(out, fmt.Sprintf("kustomization.yaml: ConfigMap %s holds %s: a ConfigMap is not for secrets", g.Name, k))
			}
		}
	}
	return out
}

// walkYAML calls f with every scalar value and key below n.
func walkYAML(n *yaml.Node, f func(string)) {
	if n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode {
		f(n.Value)
	}
	for _, c := range n.Content {
		walkYAML(c, f)
	}
}

// readDir reads every regular file of a directory.
func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, en := range entries {
		if !en.IsDir() {
			files[en.Name()] = readFile(t, filepath.Join(dir, en.Name()))
		}
	}
	return files
}

// ---------------------------------------------------------------------------------------
// Dockerfile (deploy/Dockerfile) and .dockerignore
// ---------------------------------------------------------------------------------------

type dockerInstr struct {
	cmd, args string
	line      int
}

// parseDockerfile returns the instructions of a Dockerfile: continuation lines joined,
// comments and blank lines dropped, the instruction upper-cased.
func parseDockerfile(src string) []dockerInstr {
	var out []dockerInstr
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(t, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(t, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(t)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur.Reset()
	}
	return out
}

var dockerArgRE = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// registryHost returns the registry host an image reference names ("" for none): the first
// path component when it has a dot or a port, or is localhost.
func registryHost(image string) string {
	first, _, found := strings.Cut(image, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return first
	}
	return ""
}

// checkDockerfile: multi-stage; every base image pinned (a tag other than latest) and
// named without a registry host; the build stage builds ./handler with CGO_ENABLED=0; the
// final stage is scratch (or a distroless static image) with the CA certificates copied in,
// a numeric non-root USER and ENTRYPOINT ["/handler", "worker"] in exec form; the health
// address, if set, on the contract's port.
func checkDockerfile(src string) []string {
	instrs := parseDockerfile(src)
	args := map[string]string{}
	var stages [][]dockerInstr
	var bases []string
	var out []string
	for _, in := range instrs {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = strings.Trim(v, `"`)
		case in.cmd == "FROM":
			fields := strings.Fields(in.args)
			image := ""
			for _, f := range fields {
				if !strings.HasPrefix(f, "--") {
					image = dockerArgRE.ReplaceAllStringFunc(f, func(ref string) string { return args[dockerArgRE.FindStringSubmatch(ref)[1]] })
					break
				}
			}
			bases = append(bases, image)
			stages = append(stages, nil)
			if host := registryHost(image); host != "" {
				out = append(out, fmt.Sprintf("line %d: FROM %s names the registry host %s", in.line, image, host))
			}
			_, tag, hasTag := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
			if image != "scratch" && (!hasTag || tag == "latest" || tag == "") && !strings.Contains(image, "@sha256:") {
				out = append(out, fmt.Sprintf("line %d: FROM %s is not pinned to a version", in.line, image))
			}
		case len(stages) > 0:
			stages[len(stages)-1] = append(stages[len(stages)-1], in)
		}
	}
	if len(stages) < 2 {
		return append(out, fmt.Sprintf("want a multi-stage build, found %d stage(s)", len(stages)))
	}
	final := stages[len(stages)-1]
	if b := bases[len(bases)-1]; b != "scratch" && !strings.Contains(b, "distroless/static") {
		out = append(out, "final stage FROM "+b+", want scratch (or a distroless static image): no shell, no package manager")
	}
	built := false
	for _, st := range stages[:len(stages)-1] {
		cgoEnv := slices.ContainsFunc(st, func(in dockerInstr) bool { return in.cmd == "ENV" && strings.Contains(in.args, "CGO_ENABLED=0") })
		for _, in := range st {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") && strings.Contains(in.args, "./handler") &&
				(cgoEnv || strings.Contains(in.args, "CGO_ENABLED=0")) {
				built = true
			}
		}
	}
	if !built {
		out = append(out, "no build stage runs `go build ./handler` with CGO_ENABLED=0 (a static binary)")
	}
	return append(out, checkDockerFinalStage(final)...)
}

// checkDockerFinalStage checks the final stage of checkDockerfile.
func checkDockerFinalStage(final []dockerInstr) []string {
	var out []string
	var user, entrypoint, healthAddr, hostJSON string
	var copied []string
	certs := false
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "ENV":
			if _, v, ok := strings.Cut(in.args, settingWorkerHealthAddr+"="); ok {
				healthAddr = strings.Fields(v)[0]
			}
			if _, v, ok := strings.Cut(in.args, settingWorkerHostJSON+"="); ok {
				hostJSON = strings.Fields(v)[0]
			}
		case "COPY":
			if f := strings.Fields(in.args); len(f) > 0 {
				copied = append(copied, f[len(f)-1])
			}
			if strings.Contains(in.args, "--from=") && strings.Contains(in.args, "ca-certificates") && strings.Contains(in.args, "/etc/ssl/certs/") {
				certs = true
			}
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		out = append(out, fmt.Sprintf("final stage USER %q, want a numeric non-root uid (runAsNonRoot can verify only a number)", user))
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || !slices.Equal(ep, []string{"/handler", "worker"}) {
		out = append(out, fmt.Sprintf("ENTRYPOINT %s, want the exec form [\"/handler\", \"worker\"] (the worker as PID 1, receiving SIGTERM)", entrypoint))
	}
	if hostJSON != "" && !slices.Contains(copied, hostJSON) {
		out = append(out, fmt.Sprintf("%s=%s, but the final stage copies nothing there", settingWorkerHostJSON, hostJSON))
	}
	if !certs {
		out = append(out, "the final stage does not copy the CA certificates from the build stage to /etc/ssl/certs/")
	}
	if healthAddr != "" && !strings.HasSuffix(healthAddr, ":"+strconv.Itoa(workerHealthPort)) {
		out = append(out, fmt.Sprintf("%s=%s, want port %d", settingWorkerHealthAddr, healthAddr, workerHealthPort))
	}
	return out
}

// checkDockerignore: the build context leaves out the git history, local settings and
// environment files and build output.
func checkDockerignore(src string) []string {
	lines := map[string]bool{}
	for _, l := range strings.Split(src, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			lines[strings.TrimSuffix(strings.TrimPrefix(t, "/"), "/")] = true
		}
	}
	var out []string
	for _, want := range []string{".git", ".env", ".azure", "local/local.settings.json", "local/node_modules", "dist"} {
		if !lines[want] {
			out = append(out, ".dockerignore does not exclude "+want)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------
// systemd (deploy/systemd)
// ---------------------------------------------------------------------------------------

// systemdUnit is a parsed unit file: section -> key -> values (keys may repeat).
type systemdUnit map[string]map[string][]string

func parseSystemdUnit(src string) (systemdUnit, []string) {
	u := systemdUnit{}
	var out []string
	section := ""
	for i, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";"):
		case strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]"):
			section = t[1 : len(t)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case section == "":
			out = append(out, fmt.Sprintf("line %d: a setting outside any section", i+1))
		default:
			k, v, ok := strings.Cut(t, "=")
			if !ok {
				out = append(out, fmt.Sprintf("line %d: %q is not key=value", i+1, t))
				continue
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u, out
}

// last returns the effective (last) value of a key ("" when unset).
func (u systemdUnit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

var systemdTimeRE = regexp.MustCompile(`^(\d+)\s*(ms|s|sec|seconds?|m|min|minutes?|h|hr|hours?)?$`)

// parseSystemdTime parses a systemd time span such as "40", "40s", "1min 30s".
func parseSystemdTime(s string) (time.Duration, error) {
	var total time.Duration
	fields := strings.Fields(s)
	if len(fields) == 0 {
		return 0, fmt.Errorf("empty time span")
	}
	for _, f := range fields {
		m := systemdTimeRE.FindStringSubmatch(f)
		if m == nil {
			return 0, fmt.Errorf("time span %q not understood", s)
		}
		n, _ := strconv.Atoi(m[1])
		unit := time.Second
		switch {
		case m[2] == "ms":
			unit = time.Millisecond
		case m[2] == "m" || strings.HasPrefix(m[2], "min"):
			unit = time.Minute
		case strings.HasPrefix(m[2], "h"):
			unit = time.Hour
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// parseEnvFile parses a systemd EnvironmentFile (KEY=VALUE lines, # comments).
func parseEnvFile(src string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(src, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
			continue
		}
		k, v, _ := strings.Cut(t, "=")
		m[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return m
}

// systemdWorkerExempt are the settings the VM worker's environment file leaves unset.
var systemdWorkerExempt = map[string]string{
	settingWebhookSecrets: "a secret: never in a plain file; loaded from Key Vault at boot, or unset (webhook callbacks then fail permanently, as documented)",
}

// checkSystemdUnit: ExecStart runs `<absolute path> worker`; Restart=always; an
// EnvironmentFile; SIGTERM as the stop signal and a stop timeout that covers the drain of
// the settings in env; a non-root user; the hardening options; enabled in multi-user.target.
func checkSystemdUnit(u systemdUnit, env map[string]string) []string {
	var out []string
	exec := strings.Fields(u.last("Service", "ExecStart"))
	if len(exec) < 2 || !strings.HasPrefix(exec[0], "/") || exec[1] != "worker" {
		out = append(out, fmt.Sprintf("ExecStart=%s, want <absolute path of the handler> worker", u.last("Service", "ExecStart")))
	}
	if v := u.last("Service", "Restart"); v != "always" {
		out = append(out, "Restart="+v+", want always")
	}
	if u.last("Service", "EnvironmentFile") == "" {
		out = append(out, "no EnvironmentFile")
	}
	if v := u.last("Service", "KillSignal"); v != "" && v != "SIGTERM" {
		out = append(out, "KillSignal="+v+", want SIGTERM (the worker drains on it)")
	}
	if u.last("Service", "KillMode") == "none" {
		out = append(out, "KillMode=none")
	}
	stop := u.last("Service", "TimeoutStopSec")
	if stop == "" {
		stop = u.last("Service", "TimeoutSec")
	}
	if d, err := parseSystemdTime(stop); err != nil {
		out = append(out, "TimeoutStopSec: "+err.Error()+" (the default, 90s, is not a decision)")
	} else {
		out = append(out, checkStopDeadline("TimeoutStopSec", d, drainOf(env))...)
	}
	if u.last("Service", "DynamicUser") != "yes" && (u.last("Service", "User") == "" || u.last("Service", "User") == "root" || u.last("Service", "User") == "0") {
		out = append(out, "the service runs as root: set DynamicUser=yes or a User=")
	}
	for _, h := range []struct{ key, want string }{
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectControlGroups", "yes"},
		{"RestrictSUIDSGID", "yes"},
		{"CapabilityBoundingSet", ""},
	} {
		if vs, ok := u["Service"][h.key]; !ok || vs[len(vs)-1] != h.want {
			out = append(out, fmt.Sprintf("%s is %v, want %q", h.key, u["Service"][h.key], h.want))
		}
	}
	for _, key := range []string{"RestrictAddressFamilies", "SystemCallFilter"} {
		if u.last("Service", key) == "" {
			out = append(out, key+" is not set")
		}
	}
	if u.last("Install", "WantedBy") != "multi-user.target" {
		out = append(out, "WantedBy is not multi-user.target: the worker would not start at boot")
	}
	return out
}

// ---------------------------------------------------------------------------------------
// WebJob (deploy/webjob)
// ---------------------------------------------------------------------------------------

// checkWebJob: settings.job lets the continuous job run on every instance of the plan
// (is_singleton false: scale-out is the plan's) and waits at least the drain deadline plus
// the margin before killing it; run.sh starts `./handler worker` and turns the shutdown
// file and signals into SIGTERM for it.
func checkWebJob(settingsJob []byte, runSh string) []string {
	var out []string
	var s struct {
		IsSingleton      *bool `json:"is_singleton"`
		StoppingWaitTime *int  `json:"stopping_wait_time"`
		Schedule         any   `json:"schedule"`
	}
	if err := json.Unmarshal(settingsJob, &s); err != nil {
		return []string{"settings.job: " + err.Error()}
	}
	if s.IsSingleton == nil || *s.IsSingleton {
		out = append(out, "settings.job: is_singleton is not false: the worker must run on every instance of the plan")
	}
	if s.Schedule != nil {
		out = append(out, "settings.job: a schedule makes a triggered job; the worker is continuous")
	}
	if s.StoppingWaitTime == nil {
		out = append(out, "settings.job: no stopping_wait_time (the default, 5s, is shorter than the drain)")
	} else {
		out = append(out, checkStopDeadline("settings.job stopping_wait_time", time.Duration(*s.StoppingWaitTime)*time.Second, workerDrainDefault)...)
	}
	var code []string // run.sh without its comments
	for _, l := range strings.Split(runSh, "\n") {
		if t := strings.TrimSpace(l); !strings.HasPrefix(t, "#") {
			code = append(code, t)
		}
	}
	for _, want := range []string{"./handler worker", `-e "$WEBJOBS_SHUTDOWN_FILE"`, "trap stop TERM", "kill -TERM"} {
		if !strings.Contains(strings.Join(code, "\n"), want) {
			out = append(out, fmt.Sprintf("run.sh does not contain %q", want))
		}
	}
	return out
}
