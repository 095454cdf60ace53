package infra

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sitter "github.com/tree-sitter/go-tree-sitter"
	"go.yaml.in/yaml/v3"

	"github.com/nightshift-jobs/nightshift/storage"
)

// Policies of infra/bicep/worker-containerapps.bicep (the worker on Azure Container Apps),
// over the same syntax-tree model as main.bicep's (bicep_model_test.go): no shared keys or
// secrets, least-privilege roles for the one worker identity, the container app's probes,
// grace period and scale rules (KEDA azure-queue, managed identity, every storage.Layout
// queue, minimum 0 replicas), and the function app's settings.

const (
	workerCABicep     = "bicep/worker-containerapps.bicep"
	workerCAParamFile = "bicep/worker-containerapps.parameters.json"
	workerCAAzureYAML = "../deploy/containerapps/azure.yaml"

	typeContainerApp = "Microsoft.App/containerApps"
	typeManagedEnv   = "Microsoft.App/managedEnvironments"
	typeRegistry     = "Microsoft.ContainerRegistry/registries"
	roleAcrPull      = "7f951dda-4ed3-4680-a7ca-43d0e4d9d1e0"
)

var workerCAPolicies = []policy{
	{"worker no shared keys", checkWorkerNoSharedKeys},
	{"worker roles", checkWorkerRoles},
	{"worker index tags", checkWorkerIndexTags},
	{"worker container app", checkWorkerContainerApp},
	{"worker scale rules", checkWorkerScaleRules},
	{"worker settings", checkWorkerCASettings},
	{"worker outputs", checkWorkerOutputs},
}

func runWorkerCAPolicies(m *bicepModel, e expectations) []string {
	return runPolicySet(workerCAPolicies, m, e)
}

var keyListingFuncs = []string{"listKeys", "listAccountSas", "listServiceSas", "listConnectionStrings", "listCredentials", "listCredential", "listSecrets"}

// checkWorkerNoSharedKeys: no key-listing function, no connection string or key literal; the
// module creates or reconfigures no storage account (it reads main.bicep's, whose shared
// keys are off); the registry has no admin user and no anonymous pull; the app pulls with
// its identity and holds secrets only as Key Vault references; the environment sends logs
// through Azure Monitor, not with a workspace key.
func checkWorkerNoSharedKeys(m *bicepModel, _ expectations) []string {
	var out []string
	walk(m.tree.RootNode(), func(n *sitter.Node) {
		switch n.Kind() {
		case "call_expression":
			fn := m.text(n.ChildByFieldName("function"))
			if i := strings.LastIndex(fn, "."); i >= 0 {
				fn = fn[i+1:]
			}
			if slices.Contains(keyListingFuncs, fn) {
				out = append(out, fmt.Sprintf("%d: %s() reads a key or credential", n.StartPosition().Row+1, fn))
			}
		case "string":
			if s, _ := m.literal(n); inlineSecretRE.MatchString(s) {
				out = append(out, fmt.Sprintf("%d: a connection string, key or SAS literal", n.StartPosition().Row+1))
			}
		}
	})
	for _, r := range m.ofType(typeStorageAccount) {
		if !r.existing {
			out = append(out, "storage account "+r.symbol+" is created here: the worker uses main.bicep's account (existing)")
		}
	}
	for _, r := range m.ofType(typeRegistry) {
		for _, k := range []string{"adminUserEnabled", "anonymousPullEnabled"} {
			if got := m.text(m.path(r.body, "properties", k)); got != "false" {
				out = append(out, fmt.Sprintf("registry %s: properties.%s is %q, want false", r.symbol, k, got))
			}
		}
	}
	for _, r := range m.ofType(typeContainerApp) {
		cfg := m.path(r.body, "properties", "configuration")
		for _, reg := range arrayObjects(m.prop(cfg, "registries")) {
			if m.prop(reg, "identity") == nil || m.prop(reg, "passwordSecretRef") != nil || m.prop(reg, "username") != nil {
				out = append(out, "registry "+m.text(m.prop(reg, "server"))+" is not pulled with the identity alone")
			}
		}
		for _, sec := range arrayObjects(m.prop(cfg, "secrets")) {
			if m.prop(sec, "value") != nil || m.prop(sec, "keyVaultUrl") == nil || m.prop(sec, "identity") == nil {
				out = append(out, "secret "+m.text(m.prop(sec, "name"))+" is not a Key Vault reference resolved with the identity")
			}
		}
	}
	for _, r := range m.ofType(typeManagedEnv) {
		if m.path(r.body, "properties", "appLogsConfiguration", "logAnalyticsConfiguration") != nil {
			out = append(out, "environment "+r.symbol+" ships logs with the workspace's shared key: use destination 'azure-monitor' and a diagnostic setting")
		}
	}
	return out
}

// arrayObjects returns the object elements of an array node.
func arrayObjects(n *sitter.Node) []*sitter.Node {
	var out []*sitter.Node
	if n == nil || n.Kind() != "array" {
		return nil
	}
	for i := uint(0); i < n.NamedChildCount(); i++ {
		if c := n.NamedChild(i); c.Kind() == "object" {
			out = append(out, c)
		}
	}
	return out
}

// workerRoleGUIDs are the only roles the worker identity may hold.
var workerRoleGUIDs = []string{roleStorageBlobDataContributor, roleStorageBlobDataReader, roleStorageQueueDataContributor, roleKeyVaultCryptoUser, roleKeyVaultSecretsUser, roleAcrPull}

// checkWorkerRoles: one user-assigned identity holds every role assignment, each with a
// scope and only workerRoleGUIDs (no Storage Blob Data Owner, no Blob Delegator: a worker
// signs no links); blob data roles only on containers; Storage Blob Data Contributor on
// each of storage.Layout's containers and the host's lease container, and on no other
// named container; queue data, Key Vault and registry roles at their resource.
func checkWorkerRoles(m *bicepModel, e expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	if slices.Contains(m.guidsIn(m.tree.RootNode()), roleStorageBlobDataOwner) {
		out = append(out, "Storage Blob Data Owner appears in the template")
	}
	for _, r := range m.ofType(typeRoleAssignment) {
		if m.prop(r.body, "scope") == nil {
			out = append(out, r.symbol+" has no scope: it would apply to the whole resource group")
		}
		if got := m.text(m.path(r.body, "properties", "principalId")); got != id+".properties.principalId" {
			out = append(out, fmt.Sprintf("%s grants a role to %s, not to the worker identity", r.symbol, got))
		}
		for _, g := range m.guidsIn(m.path(r.body, "properties", "roleDefinitionId")) {
			if !slices.Contains(workerRoleGUIDs, g) {
				out = append(out, fmt.Sprintf("%s grants role %s, which a worker does not need", r.symbol, g))
			}
		}
	}
	for _, guid := range []string{roleStorageBlobDataContributor, roleStorageBlobDataReader} {
		for _, r := range m.roleAssignmentsTo(id, guid) {
			if sc := m.scopeOf(r); sc == nil || !strings.EqualFold(sc.typ, typeContainer) {
				out = append(out, fmt.Sprintf("%s grants a blob data role on %q: scope it to a container", r.symbol, m.text(m.prop(r.body, "scope"))))
			}
		}
	}
	var named []string
	contributor := m.roleAssignmentsTo(id, roleStorageBlobDataContributor)
	for _, c := range m.ofType(typeContainer) {
		names := m.names(c)
		if slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "<expr:") }) {
			continue // the operator's csv containers: read-only, checked above
		}
		named = append(named, names...)
		if !slices.ContainsFunc(contributor, func(r *bicepResource) bool { return m.coversEach(r, c) }) {
			out = append(out, "no Storage Blob Data Contributor assignment on each container of "+c.symbol)
		}
	}
	if d := setDiff(named, append(slices.Clone(e.containers), storage.HostContainer)); d != "" {
		out = append(out, "blob containers differ from storage.Layout plus "+storage.HostContainer+": "+d)
	}
	return append(out, checkWorkerResourceRoles(m, id)...)
}

// checkWorkerResourceRoles: the non-blob roles, each unconditional (or conditional exactly
// like its resource), not a loop, at one of its scope types, for a service principal.
func checkWorkerResourceRoles(m *bicepModel, id string) []string {
	var out []string
	for _, req := range []struct {
		role, guid string
		scopeTypes []string
	}{
		{"Storage Queue Data Contributor", roleStorageQueueDataContributor, []string{typeStorageAccount}},
		{"Key Vault Crypto User", roleKeyVaultCryptoUser, []string{typeVaultKey}},
		{"Key Vault Secrets User", roleKeyVaultSecretsUser, []string{typeVaultSecret}},
		{"AcrPull", roleAcrPull, []string{typeRegistry}},
	} {
		found := false
		for _, r := range m.roleAssignmentsTo(id, req.guid) {
			scope := m.scopeOf(r)
			ok := r.loop == nil && scope != nil &&
				slices.ContainsFunc(req.scopeTypes, func(t string) bool { return strings.EqualFold(scope.typ, t) }) &&
				(r.condition == nil || (scope.condition != nil && m.text(r.condition) == m.text(scope.condition))) &&
				m.text(m.path(r.body, "properties", "principalType")) == "'ServicePrincipal'"
			found = found || ok
		}
		if !found {
			out = append(out, fmt.Sprintf("no role assignment of %s (%s) to %s scoped to a %s", req.role, req.guid, id, strings.Join(req.scopeTypes, " or ")))
		}
	}
	return out
}

// checkWorkerIndexTags: the worker identity holds main.bicep's index-tags custom role (an
// `existing` role definition; TestWorkerContainerAppsMatchesMain checks its name) on the
// status container, the only one whose blobs carry index tags.
func checkWorkerIndexTags(m *bicepModel, _ expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	for _, def := range m.ofType(typeRoleDefinition) {
		if !def.existing {
			out = append(out, def.symbol+": the module defines a role; it must use main.bicep's")
			continue
		}
		for _, r := range m.ofType(typeRoleAssignment) {
			scope := m.scopeOf(r)
			if r.condition != nil || r.loop != nil || scope == nil || !strings.EqualFold(scope.typ, typeContainer) ||
				m.text(m.path(r.body, "properties", "roleDefinitionId")) != def.symbol+".id" ||
				m.text(m.path(r.body, "properties", "principalId")) != id+".properties.principalId" {
				continue
			}
			if m.text(m.prop(r.body, "scope")) == scope.symbol+"[0]" && m.names(scope)[0] == storage.StatusContainer {
				return out
			}
		}
	}
	return append(out, "no assignment of main.bicep's index-tags role to "+id+" on the "+storage.StatusContainer+" container: a worker's status writes would go untagged")
}

// theContainerApp returns the single container app and its single container.
func theContainerApp(m *bicepModel) (*bicepResource, *sitter.Node, []string) {
	apps := m.ofType(typeContainerApp)
	if len(apps) != 1 {
		return nil, nil, []string{fmt.Sprintf("want exactly one %s, found %d", typeContainerApp, len(apps))}
	}
	containers := arrayObjects(m.path(apps[0].body, "properties", "template", "containers"))
	if len(containers) != 1 {
		return apps[0], nil, []string{fmt.Sprintf("want one container, found %d", len(containers))}
	}
	return apps[0], containers[0], nil
}

// checkWorkerContainerApp: the app runs with the user-assigned identity, has no ingress,
// keeps the image's entry point, has a liveness probe on /healthz and a readiness probe on
// /readyz at the contract's port, a grace period covering the drain, and the azd service tag.
func checkWorkerContainerApp(m *bicepModel, e expectations) []string {
	id, out := theIdentity(m)
	app, c, problems := theContainerApp(m)
	if id == "" || c == nil {
		return append(out, problems...)
	}
	if got := m.text(m.path(app.body, "identity", "type")); got != "'UserAssigned'" {
		out = append(out, "identity.type is "+got+", want 'UserAssigned'")
	}
	if !strings.Contains(m.text(m.path(app.body, "identity", "userAssignedIdentities")), "${"+id+".id}") {
		out = append(out, "identity.userAssignedIdentities does not attach "+id)
	}
	if !strings.Contains(m.text(m.prop(app.body, "tags")), "'azd-service-name': 'worker'") {
		out = append(out, "tags lack 'azd-service-name': 'worker' (azd deploy finds the app by it)")
	}
	if m.path(app.body, "properties", "configuration", "ingress") != nil {
		out = append(out, "the app has ingress: a worker takes work from the queues, nothing calls it")
	}
	if m.prop(c, "command") != nil {
		out = append(out, "the container overrides the image's `handler worker` entry point")
	}
	probes := map[string]*sitter.Node{}
	for _, p := range arrayObjects(m.prop(c, "probes")) {
		t, _ := m.eval(m.prop(p, "type"))
		probes[t] = p
	}
	for _, want := range []struct{ typ, path string }{{"Liveness", workerLivenessPath}, {"Readiness", workerReadyPath}} {
		p := probes[want.typ]
		path, _ := m.eval(m.path(p, "httpGet", "path"))
		if p == nil || path != want.path || m.text(m.path(p, "httpGet", "port")) != strconv.Itoa(workerHealthPort) {
			out = append(out, fmt.Sprintf("no %s probe httpGet %s on port %d", want.typ, want.path, workerHealthPort))
		}
	}
	grace, err := strconv.Atoi(m.text(m.path(app.body, "properties", "template", "terminationGracePeriodSeconds")))
	if err != nil {
		out = append(out, "template.terminationGracePeriodSeconds is not a number (the default, 30s, is not a decision)")
	} else {
		settings, _ := workerCASettings(m)
		out = append(out, checkStopDeadline("template.terminationGracePeriodSeconds", time.Duration(grace)*time.Second, drainOf(settings))...)
	}
	return out
}

// checkWorkerScaleRules: minReplicas 0, a maximum, and one custom KEDA azure-queue rule per
// storage.Layout queue (literal rules, or a loop over a list), each authenticated with the
// worker identity (no auth secrets) against the module's storage account, with a target.
func checkWorkerScaleRules(m *bicepModel, e expectations) []string {
	id, out := theIdentity(m)
	app, _, problems := theContainerApp(m)
	if id == "" || app == nil {
		return append(out, problems...)
	}
	scale := m.path(app.body, "properties", "template", "scale")
	if m.text(m.prop(scale, "minReplicas")) != "0" {
		out = append(out, "scale.minReplicas is "+m.text(m.prop(scale, "minReplicas"))+", want 0 (scale to zero)")
	}
	if m.prop(scale, "maxReplicas") == nil {
		out = append(out, "scale.maxReplicas is not set")
	}
	accounts := m.ofType(typeStorageAccount)
	if len(accounts) != 1 {
		return append(out, fmt.Sprintf("want one %s, found %d", typeStorageAccount, len(accounts)))
	}
	type rule struct {
		body   *sitter.Node
		queues []string
	}
	var rules []rule
	switch n := m.prop(scale, "rules"); {
	case n != nil && n.Kind() == "for_statement":
		loopVar, iter := m.loopParts(n)
		body := n.ChildByFieldName("body")
		qs, ok := m.evalList(iter)
		if !ok || m.text(m.path(body, "custom", "metadata", "queueName")) != loopVar {
			out = append(out, "scale rule loop: queueName is not the loop variable over a list of queue names")
		}
		rules = append(rules, rule{body, qs})
	default:
		for _, r := range arrayObjects(n) {
			q, _ := m.eval(m.path(r, "custom", "metadata", "queueName"))
			rules = append(rules, rule{r, []string{q}})
		}
	}
	var covered []string
	for _, r := range rules {
		covered = append(covered, r.queues...)
		where := fmt.Sprintf("scale rule for %v", r.queues)
		custom := m.prop(r.body, "custom")
		if t, _ := m.eval(m.prop(custom, "type")); t != "azure-queue" {
			out = append(out, fmt.Sprintf("%s: type %q, want azure-queue", where, t))
		}
		if m.text(m.prop(custom, "identity")) != id+".id" {
			out = append(out, where+": identity is "+m.text(m.prop(custom, "identity"))+", want "+id+".id (the scaler reads the queue with the managed identity)")
		}
		if m.prop(custom, "auth") != nil {
			out = append(out, where+": auth secrets: use the identity")
		}
		md := m.prop(custom, "metadata")
		if m.text(m.prop(md, "accountName")) != accounts[0].symbol+".name" {
			out = append(out, where+": metadata.accountName is not "+accounts[0].symbol+".name")
		}
		if m.prop(md, "queueLength") == nil {
			out = append(out, where+": no metadata.queueLength target")
		}
		for _, k := range []string{"connection", "connectionFromEnv"} {
			if m.prop(md, k) != nil {
				out = append(out, where+": metadata."+k+" is set: use the identity")
			}
		}
	}
	if d := setDiff(covered, e.queues); d != "" {
		out = append(out, "scale rule queues differ from storage.Layout: "+d)
	}
	return out
}

// workerEnvEntries resolves the container's env to its entries: name -> value node, and
// the names no later object or parameter can override. It follows variables, concat(),
// map(items(X), lambda) (X a union() of objects, as appSettings flattens them) and arrays
// of {name, value|secretRef}. unknown is true when part of it cannot be resolved.
func (m *bicepModel) workerEnvEntries(n *sitter.Node) (all, protected map[string]*sitter.Node, unknown bool) {
	all, protected = map[string]*sitter.Node{}, map[string]*sitter.Node{}
	var visit func(n *sitter.Node, depth int)
	visit = func(n *sitter.Node, depth int) {
		n = m.resolve(n)
		switch {
		case n == nil || depth > 8:
			unknown = true
		case n.Kind() == "array":
			for _, el := range arrayObjects(n) {
				name, ok := m.eval(m.prop(el, "name"))
				if !ok {
					unknown = true
					continue
				}
				v := m.prop(el, "value")
				if v == nil {
					v = m.prop(el, "secretRef")
				}
				all[name], protected[name] = v, v
			}
		case n.Kind() == "call_expression" && m.text(n.ChildByFieldName("function")) == "concat":
			args := n.ChildByFieldName("arguments")
			for i := uint(0); i < args.NamedChildCount(); i++ {
				visit(args.NamedChild(i), depth+1)
			}
		case n.Kind() == "call_expression" && m.text(n.ChildByFieldName("function")) == "map":
			items := n.ChildByFieldName("arguments").NamedChild(0)
			if items == nil || items.Kind() != "call_expression" || m.text(items.ChildByFieldName("function")) != "items" {
				unknown = true
				return
			}
			a, p := m.unionKeys(items.ChildByFieldName("arguments").NamedChild(0))
			for k, v := range a {
				all[k] = v
			}
			for k, v := range p {
				protected[k] = v
			}
		default:
			unknown = true
		}
	}
	visit(n, 0)
	return all, protected, unknown
}

// unionKeys flattens an object, a variable holding one, a ternary of two, or a union() of
// those and of parameters (unknown keys) like appSettings does for the function app.
func (m *bicepModel) unionKeys(n *sitter.Node) (all, protected map[string]*sitter.Node) {
	all, protected = map[string]*sitter.Node{}, map[string]*sitter.Node{}
	var sources []*sitter.Node
	var flatten func(n *sitter.Node, depth int)
	flatten = func(n *sitter.Node, depth int) {
		n = m.resolve(n)
		switch {
		case n == nil || depth > 8:
			sources = append(sources, nil)
		case n.Kind() == "object":
			sources = append(sources, n)
		case n.Kind() == "call_expression" && m.text(n.ChildByFieldName("function")) == "union":
			args := n.ChildByFieldName("arguments")
			for i := uint(0); i < args.NamedChildCount(); i++ {
				flatten(args.NamedChild(i), depth+1)
			}
		case n.Kind() == "ternary_expression":
			flatten(n.ChildByFieldName("consequence"), depth+1)
			flatten(n.ChildByFieldName("alternative"), depth+1)
		default:
			sources = append(sources, nil)
		}
	}
	flatten(n, 0)
	for _, obj := range sources {
		if obj == nil {
			clear(protected)
			continue
		}
		for _, p := range m.props(obj) {
			v := p.NamedChild(p.NamedChildCount() - 1)
			all[m.keyOf(p)], protected[m.keyOf(p)] = v, v
		}
	}
	return all, protected
}

// workerCASettings returns the container's settings as checkWorkerSettings takes them
// (literal values, "<expr:TEXT>" for the others) and the value nodes.
func workerCASettings(m *bicepModel) (map[string]string, map[string]*sitter.Node) {
	_, c, _ := theContainerApp(m)
	all, _, _ := m.workerEnvEntries(m.prop(c, "env"))
	out := map[string]string{}
	for k, v := range all {
		if s, ok := m.eval(v); ok {
			out[k] = s
		} else {
			out[k] = "<expr:" + m.text(v) + ">"
		}
	}
	return out, all
}

var secretURIRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\.properties\.secretUri$`)

// checkWorkerCASettings: the function app's settings (checkWorkerSettings) for the worker
// identity: identity-based storage of the module's account, the identity's client id,
// the key-encryption key's URI, the webhook secrets only as a secret reference to the
// vault secret; identity, storage and security settings not overridable by a parameter.
func checkWorkerCASettings(m *bicepModel, e expectations) []string {
	id, out := theIdentity(m)
	app, c, problems := theContainerApp(m)
	if id == "" || c == nil {
		return append(out, problems...)
	}
	all, protected, unknown := m.workerEnvEntries(m.prop(c, "env"))
	if unknown {
		out = append(out, "part of the container's env cannot be resolved: "+m.text(m.prop(c, "env")))
	}
	settings, _ := workerCASettings(m)
	out = append(out, checkWorkerSettings(settings, nil, e)...)
	accounts := m.ofType(typeStorageAccount)
	account := ""
	if len(accounts) == 1 {
		account = accounts[0].symbol
	}
	expect := func(name, want string) {
		if got := m.text(all[name]); got != want {
			out = append(out, fmt.Sprintf("setting %s is %q, want %s", name, got, want))
		}
	}
	expect(storage.SettingCredential, "'managedidentity'")
	expect(storage.SettingClientID, id+".properties.clientId")
	expect(settingAzureClientID, id+".properties.clientId")
	expect(storage.SettingBlobServiceURI, account+".properties.primaryEndpoints.blob")
	expect(storage.SettingQueueServiceURI, account+".properties.primaryEndpoints.queue")
	if keys := m.ofType(typeVaultKey); len(keys) == 1 {
		expect(settingEncryptionKeyURL, keys[0].symbol+".properties.keyUri")
	}
	mustProtect := []string{storage.SettingBlobServiceURI, storage.SettingQueueServiceURI, storage.SettingCredential, storage.SettingClientID, settingAzureClientID, "AZURE_TOKEN_CREDENTIALS", settingWebhookSecrets, settingCSVContainers, settingCallbackQueues, settingWorkerTimers}
	for name := range pinnedSettingValues {
		mustProtect = append(mustProtect, name)
	}
	slices.Sort(mustProtect)
	for _, name := range mustProtect {
		if _, ok := protected[name]; !ok {
			out = append(out, "setting "+name+" is missing or can be overridden by a parameter (put it in the last union() argument)")
		}
	}
	// Next to main.bicep's function app (whose timers fire) the workers' timers are off
	// unless a parameter turns them on.
	if n := all[settingWorkerTimers]; n != nil {
		lit, isLit := m.eval(n)
		p := m.mentionsParam(n, func(p bicepParam) bool { return p.typ == "bool" })
		if (isLit && lit != "false") || (!isLit && (p == nil || p.def != "false")) {
			out = append(out, fmt.Sprintf("setting %s is %s: off by default (the function app fires the timers), or a bool parameter defaulting to false", settingWorkerTimers, m.text(n)))
		}
	}
	// NIGHTSHIFT_WEBHOOK_SECRETS: a secretRef to a Key Vault reference of a vault secret.
	ref, _ := m.eval(all[settingWebhookSecrets])
	var secret *sitter.Node
	for _, s := range arrayObjects(m.path(app.body, "properties", "configuration", "secrets")) {
		if n, _ := m.eval(m.prop(s, "name")); n == ref && ref != "" {
			secret = s
		}
	}
	mm := secretURIRE.FindStringSubmatch(m.text(m.prop(secret, "keyVaultUrl")))
	if secret == nil || mm == nil || m.bySymbol(mm[1]) == nil || !strings.EqualFold(m.bySymbol(mm[1]).typ, typeVaultSecret) {
		out = append(out, settingWebhookSecrets+" is not a secretRef to a Key Vault reference (<vault secret>.properties.secretUri)")
	}
	return out
}

// checkWorkerOutputs: what azd and docs/deploy-worker.md rely on.
func checkWorkerOutputs(m *bicepModel, _ expectations) []string {
	var out []string
	for _, name := range []string{"AZURE_CONTAINER_REGISTRY_ENDPOINT", "AZURE_CONTAINER_APP_NAME", "AZURE_RESOURCE_GROUP", "AZURE_WORKER_IDENTITY_CLIENT_ID"} {
		if _, ok := m.outputs[name]; !ok {
			out = append(out, "output "+name+" missing")
		}
	}
	return out
}

func TestWorkerContainerAppsPolicies(t *testing.T) {
	e := loadExpectations(t)
	m, problems := parseBicep(t, workerCABicep, readFile(t, workerCABicep))
	if len(problems) > 0 {
		t.Fatalf("syntax: %v", problems)
	}
	for _, v := range runWorkerCAPolicies(m, e) {
		t.Error(v)
	}
	for _, v := range checkParametersFile(m, readFile(t, workerCAParamFile)) {
		t.Error(v)
	}
}

// TestWorkerContainerAppsMatchesMain: the module's default names and the Key Vault objects
// it reads are main.bicep's, so both templates deployed with one environment name meet.
func TestWorkerContainerAppsMatchesMain(t *testing.T) {
	main, _ := parseBicep(t, mainBicep, readFile(t, mainBicep))
	w, _ := parseBicep(t, workerCABicep, readFile(t, workerCABicep))
	if got, want := w.text(w.vars["resourceToken"]), main.text(main.vars["resourceToken"]); got != want {
		t.Errorf("resourceToken is %s, main.bicep's is %s", got, want)
	}
	for _, c := range []struct{ workerVar, mainExpr string }{
		{"storageName", main.text(main.vars["storageAccountName"])},
		{"vaultName", main.text(main.vars["keyVaultName"])},
		{"workspaceName", main.text(main.prop(main.ofType(typeWorkspace)[0].body, "name"))},
	} {
		if !strings.Contains(w.text(w.vars[c.workerVar]), c.mainExpr) {
			t.Errorf("%s = %s does not default to main.bicep's %s", c.workerVar, w.text(w.vars[c.workerVar]), c.mainExpr)
		}
	}
	for _, typ := range []string{typeVaultKey, typeVaultSecret} {
		if got, want := namesOfType(w, typ, true), resourceNames(main, typ); !slices.Equal(got, want) {
			t.Errorf("%s: the module reads %v, main.bicep creates %v", typ, got, want)
		}
	}
	if got, want := namesOfType(w, typeRoleDefinition, true), resourceNames(main, typeRoleDefinition); !slices.Equal(got, want) {
		t.Errorf("role definitions: the module reads %v, main.bicep creates %v", got, want)
	}
	if got, want := w.text(w.vars["queueNames"]), main.text(main.vars["queueNames"]); got != want {
		t.Errorf("queueNames differ from main.bicep's:\n%s\n%s", got, want)
	}
}

func TestWorkerContainerAppsPoliciesCatchWeakenedTemplates(t *testing.T) {
	e := loadExpectations(t)
	src := string(readFile(t, workerCABicep))
	cases := []struct {
		name, policy, old, new, want string
		mutate                       func(string) string // instead of old -> new when set
	}{
		{"min replicas 1", "worker scale rules", "minReplicas: 0", "minReplicas: 1", "want 0", nil},
		{"rule without identity", "worker scale rules", "              identity: workerIdentity.id\n", "", "identity is", nil},
		{"rule with a secret", "worker scale rules", "              identity: workerIdentity.id\n", "              identity: workerIdentity.id\n              auth: [\n                {\n                  secretRef: 'conn'\n                  triggerParameter: 'connection'\n                }\n              ]\n", "auth secrets", nil},
		{"wrong scaler", "worker scale rules", "type: 'azure-queue'", "type: 'azure-servicebus'", "want azure-queue", nil},
		{"queue missing", "worker scale rules", "  'jobs-low-poison'\n]", "]", "missing [jobs-low-poison]", nil},
		{"other account", "worker scale rules", "accountName: storage.name", "accountName: 'other'", "accountName", nil},
		{"connection string", "worker no shared keys", "  NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'\n})", "  NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'\n  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=eA=='\n})", "connection string", nil},
		{"list keys", "worker no shared keys", "      destination: 'azure-monitor'\n", "      destination: 'log-analytics'\n      logAnalyticsConfiguration: {\n        customerId: logAnalytics.properties.customerId\n        sharedKey: logAnalytics.listKeys().primarySharedKey\n      }\n", "listKeys", nil},
		{"admin user", "worker no shared keys", "adminUserEnabled: false", "adminUserEnabled: true", "adminUserEnabled", nil},
		{"plain secret", "worker no shared keys", "          keyVaultUrl: webhookSecretsSecret.properties.secretUri\n", "          value: 'x'\n", "not a Key Vault reference", nil},
		{"blob owner", "worker roles", "storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'", "storageBlobDataContributor: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'", "Owner", nil},
		{"blob role on the account", "worker roles", "  scope: hostContainer\n", "  scope: storage\n", "scope it to a container", nil},
		{"no index tags role", "worker index tags", "", "", "index-tags role", func(s string) string { return removeBicepResource(s, "workerBlobIndexTags") }},
		{"index tags on results", "worker index tags", "  scope: dataContainers[0]\n  properties: {\n    roleDefinitionId: blobIndexTagsRole.id", "  scope: dataContainers[1]\n  properties: {\n    roleDefinitionId: blobIndexTagsRole.id", "index-tags role", nil},
		{"no host container role", "worker roles", "", "", "each container of hostContainer", func(s string) string { return removeBicepResource(s, "workerBlobDataContributorHost") }},
		{"delegator", "worker roles", "  acrPull: '7f951dda-4ed3-4680-a7ca-43d0e4d9d1e0'\n", "  acrPull: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'\n", "which a worker does not need", nil},
		{"data containers partly", "worker roles", "for (name, i) in dataContainerNames: {\n    name: guid(dataContainers[i].id", "for (name, i) in take(dataContainerNames, 2): {\n    name: guid(dataContainers[i].id", "each container of dataContainers", nil},
		{"secrets container", "worker roles", "var hostContainerName = 'azure-webjobs-hosts'", "var hostContainerName = 'azure-webjobs-secrets'", "unexpected [azure-webjobs-secrets]", nil},
		{"no queue role", "worker roles", "  scope: storage\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)", "  scope: registry\n  properties: {\n    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)", "Storage Queue Data Contributor", nil},
		{"no pull role", "worker roles", "  scope: registry\n", "  scope: storage\n", "AcrPull", nil},
		{"liveness on readyz", "worker container app", "                path: '/healthz'", "                path: '/readyz'", "Liveness probe httpGet /healthz", nil},
		{"probe port", "worker container app", "                path: '/readyz'\n                port: 8080", "                path: '/readyz'\n                port: 9090", "Readiness probe", nil},
		{"short grace", "worker container app", "terminationGracePeriodSeconds: 40", "terminationGracePeriodSeconds: 29", "terminationGracePeriodSeconds is 29s", nil},
		{"no grace", "worker container app", "      terminationGracePeriodSeconds: 40\n", "", "not a number", nil},
		{"ingress", "worker container app", "      activeRevisionsMode: 'Single'\n", "      activeRevisionsMode: 'Single'\n      ingress: {\n        external: true\n        targetPort: 8080\n      }\n", "ingress", nil},
		{"no azd tag", "worker container app", "'azd-service-name': 'worker'", "'azd-service-name': 'api'", "azd-service-name", nil},
		{"setting missing", "worker settings", "  NIGHTSHIFT_CALLBACK_QUEUES: callbackQueues\n", "", "NIGHTSHIFT_CALLBACK_QUEUES", nil},
		{"SSRF guard off", "worker settings", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'false'", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'true'", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE", nil},
		{"default drifted", "worker settings", "NIGHTSHIFT_RETENTION_DAYS: '14'", "NIGHTSHIFT_RETENTION_DAYS: '7'", "NIGHTSHIFT_RETENTION_DAYS", nil},
		{"overridable identity", "worker settings", "  AzureWebJobsStorage__clientId: workerIdentity.properties.clientId\n", "", "AzureWebJobsStorage__clientId", nil},
		{"webhook secrets inline", "worker settings", "    secretRef: 'webhook-secrets'\n", "    value: 'x'\n", "secretRef", nil},
		{"health port", "worker settings", "NIGHTSHIFT_WORKER_HEALTH_ADDR: ':8080'", "NIGHTSHIFT_WORKER_HEALTH_ADDR: ':9090'", "want port 8080", nil},
		{"timers on next to the function app", "worker settings", "NIGHTSHIFT_WORKER_TIMERS: workerTimers ? 'true' : 'false'", "NIGHTSHIFT_WORKER_TIMERS: 'true'", "NIGHTSHIFT_WORKER_TIMERS", nil},
		{"timers on by default", "worker settings", "param workerTimers bool = false", "param workerTimers bool = true", "NIGHTSHIFT_WORKER_TIMERS", nil},
		{"timers overridable", "worker settings", "  NIGHTSHIFT_WORKER_TIMERS: workerTimers ? 'true' : 'false'\n", "", "NIGHTSHIFT_WORKER_TIMERS is missing", nil},
		{"longer drain", "worker container app", "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT: '25s'", "NIGHTSHIFT_WORKER_DRAIN_TIMEOUT: '60s'", "drain deadline 1m0s", nil},
		{"no registry output", "worker outputs", "output AZURE_CONTAINER_REGISTRY_ENDPOINT ", "output REGISTRY ", "AZURE_CONTAINER_REGISTRY_ENDPOINT", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			weak := strings.Replace(src, c.old, c.new, 1)
			if c.mutate != nil {
				weak = c.mutate(src)
			}
			if weak == src {
				t.Fatal("the mutation did not change the template; update the test")
			}
			m, problems := parseBicep(t, c.name, []byte(weak))
			if len(problems) > 0 {
				t.Fatalf("weakened copy does not parse: %v", problems)
			}
			var hits []string
			all := runWorkerCAPolicies(m, e)
			for _, v := range all {
				if strings.HasPrefix(v, c.policy+": ") && strings.Contains(v, c.want) {
					hits = append(hits, v)
				}
			}
			if len(hits) == 0 {
				t.Errorf("policy %q did not report %q; all violations:\n  %s", c.policy, c.want, strings.Join(all, "\n  "))
			}
		})
	}
}

// removeBicepResource drops a top-level resource declaration (up to its closing brace at
// column 0) and the dependsOn line naming it.
func removeBicepResource(s, symbol string) string {
	start := strings.Index(s, "resource "+symbol+" ")
	if start < 0 {
		return s
	}
	end := strings.Index(s[start:], "\n}\n")
	s = s[:start] + s[start+end+3:]
	return strings.Replace(s, "    "+symbol+"\n", "", 1)
}

// TestWorkerContainerAppsAzureYAML checks the azd variant: its infra module is the worker
// template, the service is a container app built from deploy/Dockerfile (which exists,
// relative to the project) and named as the template's azd-service-name tag, and every
// ${VAR} of the parameters file is an azd built-in, an output of main.bicep or of the
// module, or azd's SERVICE_WORKER_IMAGE_NAME.
func TestWorkerContainerAppsAzureYAML(t *testing.T) {
	var doc struct {
		Name  string `yaml:"name"`
		Infra struct {
			Provider string `yaml:"provider"`
			Path     string `yaml:"path"`
			Module   string `yaml:"module"`
		} `yaml:"infra"`
		Services map[string]struct {
			Project  string `yaml:"project"`
			Host     string `yaml:"host"`
			Language string `yaml:"language"`
			Docker   struct {
				Path        string `yaml:"path"`
				Context     string `yaml:"context"`
				RemoteBuild bool   `yaml:"remoteBuild"`
			} `yaml:"docker"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(readFile(t, workerCAAzureYAML), &doc); err != nil {
		t.Fatal(err)
	}
	base := filepath.Dir(workerCAAzureYAML)
	if doc.Infra.Provider != "bicep" {
		t.Errorf("infra.provider %q, want bicep", doc.Infra.Provider)
	}
	module := filepath.Join(base, doc.Infra.Path, doc.Infra.Module+".bicep")
	if !samePath(t, module, workerCABicep) {
		t.Errorf("infra module %s is not %s", module, workerCABicep)
	}
	readFile(t, filepath.Join(base, doc.Infra.Path, doc.Infra.Module+".parameters.json"))
	svc, ok := doc.Services["worker"]
	if !ok || len(doc.Services) != 1 {
		t.Fatalf("services: want exactly worker, got %v", doc.Services)
	}
	if svc.Host != "containerapp" {
		t.Errorf("services.worker.host %q, want containerapp", svc.Host)
	}
	project := filepath.Join(base, svc.Project)
	if !samePath(t, project, repoRoot) {
		t.Errorf("services.worker.project %s is not the repository root", project)
	}
	if !samePath(t, filepath.Join(project, svc.Docker.Path), filepath.Join(deployDir, "Dockerfile")) {
		t.Errorf("docker.path %s is not deploy/Dockerfile", svc.Docker.Path)
	}
	if !svc.Docker.RemoteBuild {
		t.Error("docker.remoteBuild is false: azd would need a local Docker daemon")
	}
	w, _ := parseBicep(t, workerCABicep, readFile(t, workerCABicep))
	main, _ := parseBicep(t, mainBicep, readFile(t, mainBicep))
	for _, ref := range azdVarRE.FindAllStringSubmatch(string(readFile(t, workerCAParamFile)), -1) {
		name := ref[1]
		_, inMain := main.outputs[name]
		_, inWorker := w.outputs[name]
		if !inMain && !inWorker && !slices.Contains(azdBuiltins, name) && name != "AZURE_ENV_NAME" &&
			name != "SERVICE_WORKER_IMAGE_NAME" && !strings.HasPrefix(name, "NIGHTSHIFT_") {
			t.Errorf("parameters file reads ${%s}, which neither azd nor a template output sets", name)
		}
	}
}

// samePath reports whether two relative paths name the same file.
func samePath(t *testing.T, a, b string) bool {
	t.Helper()
	aa, err := filepath.Abs(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := filepath.Abs(b)
	if err != nil {
		t.Fatal(err)
	}
	return aa == bb
}
