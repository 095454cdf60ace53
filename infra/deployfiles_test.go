package infra

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nightshift-jobs/nightshift/storage"
)

// Checks of the files around the template: azure.yaml (azd) and the local settings template.

// azdBuiltins are environment values azd itself provides to hooks.
var azdBuiltins = []string{"AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID", "AZURE_PRINCIPAL_ID", "AZURE_RESOURCE_GROUP"}

var envRefRE = regexp.MustCompile(`\$(?:env:|\{)?([A-Z][A-Z0-9_]+)\b`)

// hookScripts extracts the `run: |` blocks of azure.yaml, keyed by the shell named above them.
func hookScripts(yaml string) map[string]string {
	out := map[string]string{}
	lines := strings.Split(yaml, "\n")
	shell := ""
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if s, ok := strings.CutPrefix(trimmed, "shell: "); ok {
			shell = s
		}
		if trimmed != "run: |" {
			continue
		}
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		var block []string
		for i++; i < len(lines); i++ {
			l := lines[i]
			if strings.TrimSpace(l) != "" && len(l)-len(strings.TrimLeft(l, " ")) <= indent {
				i--
				break
			}
			block = append(block, strings.TrimPrefix(l, strings.Repeat(" ", indent+2)))
		}
		out[shell] = strings.Join(block, "\n")
	}
	return out
}

func TestAzureYAML(t *testing.T) {
	raw := string(readFile(t, filepath.Join(repoRoot, "azure.yaml")))
	m, _ := parseBicep(t, mainBicep, readFile(t, mainBicep))
	if !regexp.MustCompile(`(?m)^\s+path: infra/bicep\s*$`).MatchString(raw) {
		t.Error("azure.yaml: infra.path is not infra/bicep")
	}
	scripts := hookScripts(raw)
	for _, shell := range []string{"sh", "pwsh"} {
		s, ok := scripts[shell]
		if !ok {
			t.Errorf("azure.yaml: no %s hook", shell)
			continue
		}
		for _, want := range []string{"go run ./cmd/nightshift package", "az functionapp deployment source config-zip", "dist/app.zip"} {
			if !strings.Contains(s, want) {
				t.Errorf("azure.yaml %s hook does not run %q", shell, want)
			}
		}
		// Every environment value the hook reads must be a Bicep output or an azd built-in.
		for _, ref := range envRefRE.FindAllStringSubmatch(s, -1) {
			name := ref[1]
			if name == "LASTEXITCODE" {
				continue
			}
			if _, ok := m.outputs[name]; !ok && !slices.Contains(azdBuiltins, name) {
				t.Errorf("azure.yaml %s hook reads $%s, which is neither a main.bicep output nor set by azd", shell, name)
			}
		}
	}
	if sh, err := exec.LookPath("sh"); err == nil && scripts["sh"] != "" {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(scripts["sh"])
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("azure.yaml posix hook is not valid sh: %v\n%s", err, out)
		}
	}
}

func TestLocalSettingsTemplate(t *testing.T) {
	var doc struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(repoRoot, "local", "local.settings.template.json")), &doc); err != nil {
		t.Fatalf("local/local.settings.template.json: %v", err)
	}
	if doc.IsEncrypted {
		t.Error("IsEncrypted must be false for a template")
	}
	want := map[string]string{
		"FUNCTIONS_WORKER_RUNTIME": "custom", // locally the runtime comes from here (Flex uses functionAppConfig)
		storage.SettingStorage:     "UseDevelopmentStorage=true",
	}
	for k, v := range want {
		if doc.Values[k] != v {
			t.Errorf("Values[%s] = %q, want %q", k, doc.Values[k], v)
		}
	}
	// Every other value must be a setting the Go code reads, so the template cannot drift.
	settings, err := collectGoSettings(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for k := range doc.Values {
		if _, ok := want[k]; ok {
			continue
		}
		known := func(s goSetting) bool {
			return s.Value == k || strings.HasSuffix(s.Value, "_") && strings.HasPrefix(k, s.Value) // a prefix setting
		}
		if !slices.ContainsFunc(settings, known) && k != settingWebhookSecret {
			t.Errorf("Values[%s]: no Setting* constant in the Go code reads it", k)
		}
		for _, s := range settings {
			if s.Value == k && s.HasDefault && doc.Values[k] != s.Default {
				t.Errorf("Values[%s] = %q, but the code's default is %q", k, doc.Values[k], s.Default)
			}
		}
	}
}

var settingRefRE = regexp.MustCompile(`%([^%]+)%`)

// functionBinding is a queue or blob binding of a functions/<Name>/function.json.
type functionBinding struct {
	function, kind, name string // kind "queue", "container" or "setting"
}

// repoFunctionBindings lists the literal queue names and blob containers the functions use
// (%AppSetting% and {expression} names are resolved at runtime and skipped).
func repoFunctionBindings(t *testing.T) []functionBinding {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(repoRoot, "functions", "*", "function.json"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no functions/*/function.json (%v)", err)
	}
	var out []functionBinding
	for _, path := range dirs {
		var doc struct {
			Bindings []struct {
				Type      string `json:"type"`
				QueueName string `json:"queueName"`
				Path      string `json:"path"`
				Schedule  string `json:"schedule"`
			} `json:"bindings"`
		}
		if err := json.Unmarshal(readFile(t, path), &doc); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fn := filepath.Base(filepath.Dir(path))
		for _, b := range doc.Bindings {
			// %AppSetting% references: the host resolves them from app settings and fails
			// to index the function when one is missing.
			for _, v := range []string{b.QueueName, b.Path, b.Schedule} {
				for _, ref := range settingRefRE.FindAllStringSubmatch(v, -1) {
					out = append(out, functionBinding{fn, "setting", ref[1]})
				}
			}
			if b.QueueName != "" && !strings.ContainsAny(b.QueueName, "%{") {
				out = append(out, functionBinding{fn, "queue", b.QueueName})
			}
			if container, _, _ := strings.Cut(b.Path, "/"); strings.Contains(strings.ToLower(b.Type), "blob") && container != "" && !strings.ContainsAny(container, "%{") {
				out = append(out, functionBinding{fn, "container", container})
			}
		}
	}
	return out
}

// checkFunctionBindings: every queue and container a function binds to is created by the
// template (the app identity is never expected to create them at runtime).
func checkFunctionBindings(m *bicepModel, bindings []functionBinding) []string {
	queues := resourceNames(m, typeQueue)
	containers := resourceNames(m, typeContainer)
	settings, _ := appSettings(m)
	var settingNames []string
	for k := range settings {
		settingNames = append(settingNames, k)
	}
	var out []string
	for _, b := range bindings {
		have := queues
		switch b.kind {
		case "container":
			have = containers
		case "setting":
			have = settingNames
		}
		if !slices.Contains(have, b.name) {
			out = append(out, b.function+" uses "+b.kind+" "+b.name+", which main.bicep does not create or set")
		}
	}
	return out
}

func TestFunctionBindingsExistInTemplate(t *testing.T) {
	bindings := repoFunctionBindings(t)
	src := string(readFile(t, mainBicep))
	m, _ := parseBicep(t, mainBicep, []byte(src))
	for _, v := range checkFunctionBindings(m, bindings) {
		t.Error(v)
	}
	// Without the poison queue in the template, RunDeadLetter's trigger has nothing to listen on.
	weak := strings.Replace(src, "  'jobs-poison'\n", "", 1)
	if weak == src {
		t.Fatal("mutation did not change the template")
	}
	wm, _ := parseBicep(t, "weak", []byte(weak))
	if v := checkFunctionBindings(wm, bindings); !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, "jobs-poison") }) {
		t.Errorf("missing jobs-poison not reported: %v", v)
	}
	// A generated recurring-job function references its schedule setting: it must be set
	// (in defaultAppSettings), or the host cannot index the function.
	timer := []functionBinding{{"RecurringNightly", "setting", "NIGHTSHIFT_SCHEDULE_NIGHTLY"}}
	if v := checkFunctionBindings(m, timer); len(v) != 1 {
		t.Errorf("unset schedule setting: violations %v, want one", v)
	}
	withDefault := strings.Replace(src, "var defaultAppSettings = {\n", "var defaultAppSettings = {\n  NIGHTSHIFT_SCHEDULE_NIGHTLY: '0 0 3 * * *'\n", 1)
	if withDefault == src {
		t.Fatal("mutation did not change the template")
	}
	dm, problems := parseBicep(t, "with default", []byte(withDefault))
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if v := checkFunctionBindings(dm, timer); len(v) != 0 {
		t.Errorf("schedule set in defaultAppSettings still reported: %v", v)
	}
}
