package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	sitter "github.com/tree-sitter/go-tree-sitter"

	"github.com/nightshift-jobs/nightshift/seal"
	"github.com/nightshift-jobs/nightshift/storage"
)

// Offline validation of infra/bicep (no Bicep CLI is reachable here). Two layers:
//
//  1. Syntax gate: every .bicep file parses with the tree-sitter Bicep grammar without
//     ERROR or MISSING nodes. This catches broken syntax, not types or schemas.
//  2. Structural policies over the syntax tree, each a function returning violations, run
//     on the real template and on deliberately weakened copies (TestPoliciesCatchWeakenedTemplates)
//     so that every check is shown to fail when it should.
//
// What this does NOT prove: that ARM accepts the resources (property names, API versions,
// types). That needs `bicep build`/`bicep lint` and a what-if deployment; see docs/deploy.md.

const (
	repoRoot      = ".."
	bicepDir      = "bicep"
	mainBicep     = "bicep/main.bicep"
	mainParamFile = "bicep/main.parameters.json"
)

// Built-in role definition GUIDs (shared/reference/deploy-and-azurite.md, A.2 role table).
const (
	roleStorageBlobDataOwner         = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
	roleStorageQueueDataContributor  = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
	roleMonitoringMetricsPublisher   = "3913510d-42f4-4e42-8a64-420c390055eb"
	typeStorageAccount               = "Microsoft.Storage/storageAccounts"
	typeQueue                        = "Microsoft.Storage/storageAccounts/queueServices/queues"
	typeContainer                    = "Microsoft.Storage/storageAccounts/blobServices/containers"
	typeIdentity                     = "Microsoft.ManagedIdentity/userAssignedIdentities"
	typeRoleAssignment               = "Microsoft.Authorization/roleAssignments"
	typeAppInsights                  = "Microsoft.Insights/components"
	typeWorkspace                    = "Microsoft.OperationalInsights/workspaces"
	typePlan                         = "Microsoft.Web/serverfarms"
	typeSite                         = "Microsoft.Web/sites"
	typeSiteConfig                   = "Microsoft.Web/sites/config"
	settingAppInsightsConnection     = "APPLICATIONINSIGHTS_CONNECTION_STRING"
	settingAppInsightsAuthentication = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
	settingAzureClientID             = "AZURE_CLIENT_ID"
	settingWebhookSecret             = "NIGHTSHIFT_WEBHOOK_SECRET"
)

// flexDeprecatedSettings must not appear on a Flex Consumption app. Sources:
// shared/reference/deploy-and-azurite.md A.1 ("Flex Consumption plan deprecations") and the
// settings the Azure CLI's `az functionapp flex-migration` drops when moving an app to Flex.
var flexDeprecatedSettings = []string{
	"AzureWebJobsDashboard",
	"ENABLE_ORYX_BUILD",
	"FUNCTIONS_EXTENSION_VERSION",
	"FUNCTIONS_MAX_HTTP_CONCURRENCY",
	"FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
	"FUNCTIONS_WORKER_PROCESS_COUNT",
	"FUNCTIONS_WORKER_RUNTIME",
	"FUNCTIONS_WORKER_RUNTIME_VERSION",
	"SCM_DO_BUILD_DURING_DEPLOYMENT",
	"TZ",
	"WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
	"WEBSITE_CONTENTOVERVNET",
	"WEBSITE_CONTENTSHARE",
	"WEBSITE_DNS_SERVER",
	"WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
	"WEBSITE_MOUNT_ENABLED",
	"WEBSITE_NODE_DEFAULT_VERSION",
	"WEBSITE_RUN_FROM_PACKAGE",
	"WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
	"WEBSITE_TIME_ZONE",
	"WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED",
	"WEBSITE_VNET_ROUTE_ALL",
}

// notAppSettings are Setting* constants of the Go code that the deployment deliberately
// does not set, each with the reason. The test fails on an entry that no longer exists in
// the code, so this list cannot go stale silently.
var notAppSettings = map[string]string{
	storage.SettingStorage:          "connection-string form; the account has shared keys disabled, so the identity-based AzureWebJobsStorage__* settings are used",
	storage.SettingAccountName:      "alternative to AzureWebJobsStorage__blobServiceUri/__queueServiceUri, which the template sets (they also work outside the public cloud)",
	storage.SettingNamePrefix:       "only for sharing one storage account between deployments or test runs; a Bicep deployment owns its account and packages unprefixed queue names",
	"AzureFunctionsWebHost__hostid": "read by the local Functions host (funchost) only; Azure derives the host id from the app name",
	"NIGHTSHIFT_LOCAL_FUNCTION_KEY": "the local Functions host's (funchost) function key; Azure manages function keys itself",
	"FUNCTIONS_CUSTOMHANDLER_PORT":  "set by the Functions host for the handler process at start-up, not an app setting",
	seal.SettingLocalKeys:           "local keys are for development and the local host; on Azure the key-encryption key is the Key Vault key of NIGHTSHIFT_ENCRYPTION_KEY_URL (both set is an error)",
	"NIGHTSHIFT_SCHEDULE_":          "a prefix, not a setting: the concrete NIGHTSHIFT_SCHEDULE_<NAME> settings are the %…% references of generated function.json files, which TestFunctionBindingsExistInTemplate requires the template to set",
}

// alwaysRequiredSettings are set by the template for the platform and azidentity, whether or
// not a Go constant names them.
var alwaysRequiredSettings = []string{
	storage.SettingCredential,
	storage.SettingClientID,
	settingAzureClientID,
	settingAppInsightsConnection,
	settingAppInsightsAuthentication,
	settingWebhookSecret,
}

// pinnedSettingValues are app settings whose value is a security decision the template must
// keep: the SSRF guards of the http_fetch example kind and of webhook callbacks stay on in
// Azure (job arguments and callback URLs come from whoever can enqueue).
var pinnedSettingValues = map[string]string{
	"NIGHTSHIFT_FETCH_ALLOW_PRIVATE":   "'false'",
	"NIGHTSHIFT_WEBHOOK_ALLOW_PRIVATE": "'false'",
	"NIGHTSHIFT_WEBHOOK_ALLOW_HTTP":    "'false'",
}

// expectations is what the policies compare the template with, derived from the Go code.
type expectations struct {
	queues     []string          // storage.Layout{} queues, poison siblings included
	containers []string          // storage.Layout{} containers
	settings   []string          // app settings the template must set
	defaults   map[string]string // setting -> the code's Default* value
}

func loadExpectations(t testing.TB) expectations {
	t.Helper()
	layout, err := storage.NewLayout("")
	if err != nil {
		t.Fatal(err)
	}
	goSettings, err := collectGoSettings(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	e := expectations{queues: layout.Queues(), containers: layout.Containers(), defaults: map[string]string{}}
	seen := map[string]bool{}
	for _, s := range goSettings {
		seen[s.Value] = true
		if s.HasDefault {
			e.defaults[s.Value] = s.Default
		}
		if _, skip := notAppSettings[s.Value]; !skip {
			e.settings = append(e.settings, s.Value)
		}
	}
	for name := range notAppSettings {
		if !seen[name] {
			t.Errorf("notAppSettings lists %q, but no Setting* constant in the Go code has that value any more: remove the entry", name)
		}
	}
	for _, s := range alwaysRequiredSettings {
		if !slices.Contains(e.settings, s) {
			e.settings = append(e.settings, s)
		}
	}
	sort.Strings(e.settings)
	return e
}

// policy is one structural check; it returns human-readable violations (none = pass).
type policy struct {
	name  string
	check func(m *bicepModel, e expectations) []string
}

var policies = []policy{
	{"storage hardening", checkStorageHardening},
	{"role assignments", checkRoleAssignments},
	{"poison queues", checkPoisonQueues},
	{"storage layout drift", checkStorageDrift},
	{"flex function app", checkFlexApp},
	{"app settings", checkAppSettings},
	{"no flex-deprecated settings", checkNoDeprecatedSettings},
	{"monitoring", checkMonitoring},
	{"outputs", checkOutputs},
}

// runPolicies runs every policy and returns "policy: violation" lines.
func runPolicies(m *bicepModel, e expectations) []string {
	var out []string
	for _, p := range policies {
		for _, v := range p.check(m, e) {
			out = append(out, p.name+": "+v)
		}
	}
	return out
}

// ---------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------

// checkStorageHardening: every storage account has shared keys off, TLS 1.2, no public blob
// access, HTTPS only and Entra authorization by default.
func checkStorageHardening(m *bicepModel, _ expectations) []string {
	accounts := m.ofType(typeStorageAccount)
	if len(accounts) == 0 {
		return []string{"no " + typeStorageAccount + " resource"}
	}
	want := []struct{ key, value string }{
		{"allowSharedKeyAccess", "false"},
		{"allowBlobPublicAccess", "false"},
		{"minimumTlsVersion", "'TLS1_2'"},
		{"supportsHttpsTrafficOnly", "true"},
		{"defaultToOAuthAuthentication", "true"},
	}
	var out []string
	for _, r := range accounts {
		for _, w := range want {
			if got := m.text(m.path(r.body, "properties", w.key)); got != w.value {
				out = append(out, fmt.Sprintf("storage account %s: properties.%s is %q, want %s", r.symbol, w.key, got, w.value))
			}
		}
	}
	return out
}

// theIdentity returns the symbolic name of the single user-assigned identity.
func theIdentity(m *bicepModel) (string, []string) {
	ids := m.ofType(typeIdentity)
	if len(ids) != 1 {
		return "", []string{fmt.Sprintf("want exactly one %s, found %d", typeIdentity, len(ids))}
	}
	return ids[0].symbol, nil
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// guidsIn lists the GUIDs an expression mentions: string literals and variables or
// var.member lookups that resolve to a GUID.
func (m *bicepModel) guidsIn(n *sitter.Node) []string {
	var out []string
	walk(n, func(c *sitter.Node) {
		switch c.Kind() {
		case "string", "identifier", "member_expression":
			if s, ok := m.eval(c); ok && guidRE.MatchString(s) {
				out = append(out, strings.ToLower(s))
			}
		}
	})
	return out
}

// checkRoleAssignments: the identity holds each required role, unconditionally, scoped to
// the resource it is for (storage account for data roles, App Insights for metrics); no
// role assignment at all is left at the (broader) deployment scope.
func checkRoleAssignments(m *bicepModel, _ expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	required := []struct {
		role, guid, scopeType string
	}{
		{"Storage Blob Data Owner", roleStorageBlobDataOwner, typeStorageAccount},
		{"Storage Queue Data Contributor", roleStorageQueueDataContributor, typeStorageAccount},
		{"Monitoring Metrics Publisher", roleMonitoringMetricsPublisher, typeAppInsights},
	}
	assignments := m.ofType(typeRoleAssignment)
	for _, r := range assignments {
		if m.prop(r.body, "scope") == nil {
			out = append(out, fmt.Sprintf("role assignment %s has no scope: it would apply to the whole resource group", r.symbol))
		}
	}
	for _, req := range required {
		found := false
		var near []string
		for _, r := range assignments {
			if !slices.Contains(m.guidsIn(m.path(r.body, "properties", "roleDefinitionId")), req.guid) {
				continue
			}
			if m.text(m.path(r.body, "properties", "principalId")) != id+".properties.principalId" {
				continue
			}
			scope := m.bySymbol(m.text(m.prop(r.body, "scope")))
			switch {
			case r.condition != nil || r.loop != nil:
				near = append(near, r.symbol+" is conditional or a loop")
			case scope == nil || !strings.EqualFold(scope.typ, req.scopeType):
				near = append(near, fmt.Sprintf("%s is scoped to %q, want a %s", r.symbol, m.text(m.prop(r.body, "scope")), req.scopeType))
			case m.text(m.path(r.body, "properties", "principalType")) != "'ServicePrincipal'":
				near = append(near, r.symbol+" has no principalType 'ServicePrincipal'")
			default:
				found = true
			}
		}
		if !found {
			v := fmt.Sprintf("no role assignment of %s (%s) to %s.properties.principalId scoped to a %s", req.role, req.guid, id, req.scopeType)
			if len(near) > 0 {
				v += " (" + strings.Join(near, "; ") + ")"
			}
			out = append(out, v)
		}
	}
	return out
}

// resourceNames returns every name created by resources of a type.
func resourceNames(m *bicepModel, typ string) []string {
	var out []string
	for _, r := range m.ofType(typ) {
		out = append(out, m.names(r)...)
	}
	return out
}

// checkPoisonQueues: every queue has its "<queue>-poison" sibling.
func checkPoisonQueues(m *bicepModel, _ expectations) []string {
	queues := resourceNames(m, typeQueue)
	if len(queues) == 0 {
		return []string{"no queues"}
	}
	var out []string
	for _, q := range queues {
		if strings.HasPrefix(q, "<expr:") {
			out = append(out, "queue name not resolvable to a literal: "+q)
			continue
		}
		if !strings.HasSuffix(q, storage.PoisonSuffix) && !slices.Contains(queues, q+storage.PoisonSuffix) {
			out = append(out, fmt.Sprintf("queue %q has no %q sibling", q, q+storage.PoisonSuffix))
		}
	}
	return out
}

// deploymentStorageValue returns the site's functionAppConfig.deployment.storage.value.
func deploymentStorageValue(m *bicepModel) *sitter.Node {
	for _, r := range m.ofType(typeSite) {
		if v := m.path(r.body, "properties", "functionAppConfig", "deployment", "storage", "value"); v != nil {
			return v
		}
	}
	return nil
}

// checkStorageDrift: the queues equal storage.Layout{}.Queues(); the containers equal
// storage.Layout{}.Containers() plus exactly one more, the Flex deployment container that
// functionAppConfig points at.
func checkStorageDrift(m *bicepModel, e expectations) []string {
	var out []string
	gotQueues := resourceNames(m, typeQueue)
	if d := setDiff(gotQueues, e.queues); d != "" {
		out = append(out, "queues differ from storage.Layout: "+d)
	}
	depValue := deploymentStorageValue(m)
	var depExprs []string // the expressions interpolated into the deployment URL
	walk(depValue, func(c *sitter.Node) {
		if c.Kind() == "interpolation" {
			depExprs = append(depExprs, m.text(c.NamedChild(0)))
		}
	})
	var literal []string
	deployment := 0
	for _, name := range resourceNames(m, typeContainer) {
		expr, isExpr := strings.CutPrefix(name, "<expr:")
		expr = strings.TrimSuffix(expr, ">")
		switch {
		case !isExpr:
			literal = append(literal, name)
		case slices.Contains(depExprs, expr):
			deployment++
		default:
			out = append(out, "container name neither a literal nor the deployment container: "+name)
		}
	}
	if deployment != 1 {
		out = append(out, fmt.Sprintf("want exactly one container named by the expression in functionAppConfig.deployment.storage.value (%q), found %d", m.text(depValue), deployment))
	}
	if d := setDiff(literal, e.containers); d != "" {
		out = append(out, "data containers differ from storage.Layout: "+d)
	}
	return out
}

// setDiff describes how got differs from want as sets ("" when equal).
func setDiff(got, want []string) string {
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	return fmt.Sprintf("missing %v, unexpected %v", missing, extra)
}

// checkFlexApp: one FC1 plan and one Linux function app with the custom runtime, deployment
// storage authenticated with the identity, and instance memory / count from parameters.
func checkFlexApp(m *bicepModel, _ expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	plans := m.ofType(typePlan)
	if len(plans) != 1 {
		return append(out, fmt.Sprintf("want exactly one %s, found %d", typePlan, len(plans)))
	}
	expect := func(what string, n *sitter.Node, want string) {
		if got := m.text(n); got != want {
			out = append(out, fmt.Sprintf("%s is %q, want %s", what, got, want))
		}
	}
	expect("plan sku.name", m.path(plans[0].body, "sku", "name"), "'FC1'")
	expect("plan sku.tier", m.path(plans[0].body, "sku", "tier"), "'FlexConsumption'")
	expect("plan properties.reserved", m.path(plans[0].body, "properties", "reserved"), "true")
	sites := m.ofType(typeSite)
	if len(sites) != 1 {
		return append(out, fmt.Sprintf("want exactly one %s, found %d", typeSite, len(sites)))
	}
	s := sites[0].body
	fac := m.path(s, "properties", "functionAppConfig")
	expect("site kind", m.prop(s, "kind"), "'functionapp,linux'")
	expect("site properties.serverFarmId", m.path(s, "properties", "serverFarmId"), plans[0].symbol+".id")
	expect("site properties.httpsOnly", m.path(s, "properties", "httpsOnly"), "true")
	expect("site identity.type", m.path(s, "identity", "type"), "'UserAssigned'")
	expect("functionAppConfig.runtime.name", m.path(fac, "runtime", "name"), "'custom'")
	expect("functionAppConfig.runtime.version", m.path(fac, "runtime", "version"), "'1.0'")
	expect("functionAppConfig.deployment.storage.type", m.path(fac, "deployment", "storage", "type"), "'blobContainer'")
	expect("functionAppConfig.deployment.storage.authentication.type", m.path(fac, "deployment", "storage", "authentication", "type"), "'UserAssignedIdentity'")
	expect("functionAppConfig.deployment.storage.authentication.userAssignedIdentityResourceId",
		m.path(fac, "deployment", "storage", "authentication", "userAssignedIdentityResourceId"), id+".id")
	for _, key := range []string{"instanceMemoryMB", "maximumInstanceCount"} {
		v := m.text(m.path(fac, "scaleAndConcurrency", key))
		if !slices.ContainsFunc(m.params, func(p bicepParam) bool { return p.name == v }) {
			out = append(out, fmt.Sprintf("functionAppConfig.scaleAndConcurrency.%s is %q, want a parameter", key, v))
		}
	}
	ids := m.path(s, "identity", "userAssignedIdentities")
	if !strings.Contains(m.text(ids), "${"+id+".id}") {
		out = append(out, "site identity.userAssignedIdentities does not attach "+id)
	}
	return out
}

// appSettings collects the app settings the template sets: the keys of
// Microsoft.Web/sites/config 'appsettings' resources (an object literal, a variable, or a
// union() of those and of parameters) and of siteConfig.appSettings arrays. protected holds
// the keys that no parameter can override: those of objects after the last union()
// argument whose keys are unknown (a parameter such as extraAppSettings), since later
// union() arguments win.
func appSettings(m *bicepModel) (all, protected map[string]*sitter.Node) {
	all = map[string]*sitter.Node{}
	protected = map[string]*sitter.Node{}
	for _, r := range m.ofType(typeSiteConfig) {
		if name, _ := m.eval(m.prop(r.body, "name")); name != "appsettings" {
			continue
		}
		var sources []*sitter.Node // object literals, or nil for a source with unknown keys
		var flatten func(n *sitter.Node, depth int)
		flatten = func(n *sitter.Node, depth int) {
			switch {
			case n == nil || depth > 8:
				sources = append(sources, nil)
			case n.Kind() == "object":
				sources = append(sources, n)
			case n.Kind() == "identifier" && m.vars[m.text(n)] != nil:
				flatten(m.vars[m.text(n)], depth+1)
			case n.Kind() == "call_expression" && m.text(n.ChildByFieldName("function")) == "union":
				args := n.ChildByFieldName("arguments")
				for i := uint(0); args != nil && i < args.NamedChildCount(); i++ {
					flatten(args.NamedChild(i), depth+1)
				}
			default:
				sources = append(sources, nil)
			}
		}
		flatten(m.prop(r.body, "properties"), 0)
		for _, obj := range sources {
			if obj == nil {
				clear(protected)
				continue
			}
			for _, p := range m.props(obj) {
				v := p.NamedChild(p.NamedChildCount() - 1)
				all[m.keyOf(p)] = v
				protected[m.keyOf(p)] = v
			}
		}
	}
	for _, r := range m.ofType(typeSite) {
		arr := m.path(r.body, "properties", "siteConfig", "appSettings")
		for i := uint(0); arr != nil && i < arr.NamedChildCount(); i++ {
			el := arr.NamedChild(i)
			if name, ok := m.eval(m.prop(el, "name")); ok {
				all[name] = m.prop(el, "value")
				protected[name] = all[name]
			}
		}
	}
	return all, protected
}

// checkAppSettings: every setting the Go code reads (minus the documented exceptions) is
// set, identity-based storage is configured completely, and the identity-related values
// point at the one user-assigned identity.
func checkAppSettings(m *bicepModel, e expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	got, protected := appSettings(m)
	for _, want := range e.settings {
		if _, ok := got[want]; !ok {
			out = append(out, "app setting "+want+" is not set")
		}
	}
	// Identity, storage, telemetry and security settings must not be overridable by a
	// parameter such as extraAppSettings.
	mustProtect := append([]string{storage.SettingBlobServiceURI, storage.SettingQueueServiceURI, "AZURE_TOKEN_CREDENTIALS"}, alwaysRequiredSettings...)
	for name := range pinnedSettingValues {
		mustProtect = append(mustProtect, name)
	}
	sort.Strings(mustProtect)
	for _, name := range mustProtect {
		if _, set := got[name]; set {
			if _, ok := protected[name]; !ok {
				out = append(out, "app setting "+name+" can be overridden by a parameter (put it in the last union() argument)")
			}
		}
	}
	if _, ok := got[storage.SettingStorage]; ok {
		out = append(out, storage.SettingStorage+" (a connection string) is set; shared keys are disabled, use the identity-based settings")
	}
	_, byName := got[storage.SettingAccountName]
	_, blob := got[storage.SettingBlobServiceURI]
	_, queue := got[storage.SettingQueueServiceURI]
	if !byName && !(blob && queue) {
		out = append(out, fmt.Sprintf("identity-based host storage needs %s, or both %s and %s", storage.SettingAccountName, storage.SettingBlobServiceURI, storage.SettingQueueServiceURI))
	}
	expect := func(name, want string) {
		if n, ok := got[name]; ok && m.text(n) != want {
			out = append(out, fmt.Sprintf("app setting %s is %s, want %s", name, m.text(n), want))
		}
	}
	expect(storage.SettingCredential, "'managedidentity'")
	expect(storage.SettingClientID, id+".properties.clientId")
	expect(settingAzureClientID, id+".properties.clientId")
	expect(settingAppInsightsAuthentication, "'ClientId=${"+id+".properties.clientId};Authorization=AAD'")
	if ai := m.ofType(typeAppInsights); len(ai) == 1 {
		expect(settingAppInsightsConnection, ai[0].symbol+".properties.ConnectionString")
	}
	for name, want := range pinnedSettingValues {
		if _, ok := got[name]; !ok {
			out = append(out, fmt.Sprintf("app setting %s is not set (want %s)", name, want))
		}
		expect(name, want)
	}
	// A literal value for a setting with a Default* constant in the code must equal it, so
	// the template never silently changes a default (schedules, retention, size limits).
	for name, def := range e.defaults {
		if lit, ok := m.eval(got[name]); ok && lit != def {
			out = append(out, fmt.Sprintf("app setting %s is %q in the template but %q in the code's Default constant", name, lit, def))
		}
	}
	// Secrets come from @secure() parameters, never literals.
	if n, ok := got[settingWebhookSecret]; ok {
		name := m.text(n)
		if !slices.ContainsFunc(m.params, func(p bicepParam) bool { return p.name == name && p.secure }) {
			out = append(out, fmt.Sprintf("app setting NIGHTSHIFT_WEBHOOK_SECRET is %s, want a @secure() parameter", name))
		}
	}
	return out
}

// checkNoDeprecatedSettings: no Flex-deprecated setting name appears as an object key or a
// string literal anywhere in the template (comments are not looked at).
func checkNoDeprecatedSettings(m *bicepModel, _ expectations) []string {
	var out []string
	seen := map[string]bool{}
	walk(m.tree.RootNode(), func(n *sitter.Node) {
		var s string
		switch n.Kind() {
		case "object_property":
			s = m.keyOf(n)
		case "string":
			s, _ = m.literal(n)
		default:
			return
		}
		for _, d := range flexDeprecatedSettings {
			if strings.EqualFold(s, d) && !seen[d] {
				seen[d] = true
				p := n.StartPosition()
				out = append(out, fmt.Sprintf("%d:%d: %s is not supported on Flex Consumption", p.Row+1, p.Column+1, d))
			}
		}
	})
	return out
}

// checkMonitoring: App Insights is workspace-based with local (key) auth disabled.
func checkMonitoring(m *bicepModel, _ expectations) []string {
	var out []string
	ai := m.ofType(typeAppInsights)
	ws := m.ofType(typeWorkspace)
	if len(ai) != 1 || len(ws) != 1 {
		return []string{fmt.Sprintf("want one %s and one %s, found %d and %d", typeAppInsights, typeWorkspace, len(ai), len(ws))}
	}
	if got := m.text(m.path(ai[0].body, "properties", "DisableLocalAuth")); got != "true" {
		out = append(out, fmt.Sprintf("App Insights properties.DisableLocalAuth is %q, want true", got))
	}
	if got := m.text(m.path(ai[0].body, "properties", "WorkspaceResourceId")); got != ws[0].symbol+".id" {
		out = append(out, fmt.Sprintf("App Insights properties.WorkspaceResourceId is %q, want %s.id", got, ws[0].symbol))
	}
	return out
}

// checkOutputs: the outputs docs/deploy.md and azure.yaml rely on exist.
func checkOutputs(m *bicepModel, _ expectations) []string {
	var out []string
	for _, name := range []string{"AZURE_FUNCTION_APP_NAME", "AZURE_RESOURCE_GROUP", "AZURE_STORAGE_BLOB_ENDPOINT", "AZURE_STORAGE_QUEUE_ENDPOINT", "NIGHTSHIFT_API_BASE_URL"} {
		if _, ok := m.outputs[name]; !ok {
			out = append(out, "output "+name+" missing")
		}
	}
	if v := m.text(m.outputs["NIGHTSHIFT_API_BASE_URL"]); !strings.HasPrefix(v, "'https://${") || !strings.Contains(v, ".properties.defaultHostName}/api'") {
		out = append(out, fmt.Sprintf("output NIGHTSHIFT_API_BASE_URL is %s, want 'https://${<site>.properties.defaultHostName}/api'", v))
	}
	return out
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBicepSyntax is the syntax gate: every .bicep file parses without ERROR/MISSING nodes.
func TestBicepSyntax(t *testing.T) {
	var files []string
	err := filepath.WalkDir(bicepDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".bicep") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .bicep files under %s", bicepDir)
	}
	for _, f := range files {
		if _, problems := parseBicep(t, f, readFile(t, f)); len(problems) > 0 {
			t.Errorf("%s:\n  %s", f, strings.Join(problems, "\n  "))
		}
	}
}

// TestSyntaxGateCatchesBrokenFiles shows the gate is not vacuous.
func TestSyntaxGateCatchesBrokenFiles(t *testing.T) {
	src := string(readFile(t, mainBicep))
	broken := map[string]string{
		"truncated":          src[:strings.Index(src, "resource storage ")+len("resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: ")],
		"unclosed object":    strings.Replace(src, "    retentionInDays: 30\n  }\n", "    retentionInDays: 30\n", 1),
		"missing assignment": strings.Replace(src, "param location string = resourceGroup().location", "param location string resourceGroup().location", 1),
	}
	for name, b := range broken {
		if b == src {
			t.Fatalf("%s: the mutation did not change the source", name)
		}
		if _, problems := parseBicep(t, name, []byte(b)); len(problems) == 0 {
			t.Errorf("%s: no syntax problem reported", name)
		}
	}
}

func TestPoliciesHoldForTemplate(t *testing.T) {
	e := loadExpectations(t)
	m, problems := parseBicep(t, mainBicep, readFile(t, mainBicep))
	if len(problems) > 0 {
		t.Fatalf("syntax: %v", problems)
	}
	for _, v := range runPolicies(m, e) {
		t.Error(v)
	}
	t.Logf("checked %d policies; expected queues %v, containers %v, app settings %v", len(policies), e.queues, e.containers, e.settings)
}

// TestPoliciesCatchWeakenedTemplates runs the policies on copies of main.bicep weakened in
// one way each and requires the named policy to report it.
func TestPoliciesCatchWeakenedTemplates(t *testing.T) {
	e := loadExpectations(t)
	src := string(readFile(t, mainBicep))
	removeResource := func(s, symbol string) string {
		start := strings.Index(s, "resource "+symbol+" ")
		if start < 0 {
			return s
		}
		end := strings.Index(s[start:], "\n}\n")
		return s[:start] + s[start+end+3:]
	}
	cases := []struct {
		name, policy, want string
		mutate             func(string) string
	}{
		{"shared key on", "storage hardening", "allowSharedKeyAccess", func(s string) string {
			return strings.Replace(s, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true", 1)
		}},
		{"TLS 1.0", "storage hardening", "minimumTlsVersion", func(s string) string {
			return strings.Replace(s, "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'", 1)
		}},
		{"public blobs", "storage hardening", "allowBlobPublicAccess", func(s string) string {
			return strings.Replace(s, "allowBlobPublicAccess: false", "allowBlobPublicAccess: true", 1)
		}},
		{"missing poison queue", "poison queues", `"jobs" has no "jobs-poison"`, func(s string) string {
			return strings.Replace(s, "  'jobs-poison'\n", "", 1)
		}},
		{"missing poison queue (drift)", "storage layout drift", "missing [jobs-poison]", func(s string) string {
			return strings.Replace(s, "  'jobs-poison'\n", "", 1)
		}},
		{"extra queue", "storage layout drift", "unexpected [jobs-extra]", func(s string) string {
			return strings.Replace(s, "  'jobs-poison'\n", "  'jobs-poison'\n  'jobs-extra'\n", 1)
		}},
		{"missing container", "storage layout drift", "missing [nightshift-results]", func(s string) string {
			return strings.Replace(s, "  'nightshift-results'\n", "", 1)
		}},
		{"no deployment container", "storage layout drift", "exactly one container", func(s string) string {
			return removeResource(s, "deploymentContainer")
		}},
		{"missing queue role", "role assignments", "Storage Queue Data Contributor", func(s string) string {
			return removeResource(s, "appQueueDataContributor")
		}},
		{"missing blob role", "role assignments", "Storage Blob Data Owner", func(s string) string {
			return removeResource(s, "appBlobDataOwner")
		}},
		{"metrics role on the wrong scope", "role assignments", "Monitoring Metrics Publisher", func(s string) string {
			return strings.Replace(s, "  scope: appInsights\n", "  scope: storage\n", 1)
		}},
		{"role for the wrong principal", "role assignments", "Storage Blob Data Owner", func(s string) string {
			i := strings.Index(s, "resource appBlobDataOwner ")
			return s[:i] + strings.Replace(s[i:], "principalId: identity.properties.principalId", "principalId: principalId", 1)
		}},
		{"role at resource-group scope", "role assignments", "has no scope", func(s string) string {
			i := strings.Index(s, "resource userBlobDataOwner ")
			return s[:i] + strings.Replace(s[i:], "  scope: storage\n", "", 1)
		}},
		{"deprecated setting", "no flex-deprecated settings", "FUNCTIONS_WORKER_RUNTIME", func(s string) string {
			return strings.Replace(s, "    AzureWebJobsStorage__credential: 'managedidentity'\n",
				"    AzureWebJobsStorage__credential: 'managedidentity'\n    FUNCTIONS_WORKER_RUNTIME: 'custom'\n", 1)
		}},
		{"run from package", "no flex-deprecated settings", "WEBSITE_RUN_FROM_PACKAGE", func(s string) string {
			return strings.Replace(s, "      minTlsVersion: '1.2'\n",
				"      minTlsVersion: '1.2'\n      appSettings: [\n        {\n          name: 'WEBSITE_RUN_FROM_PACKAGE'\n          value: '1'\n        }\n      ]\n", 1)
		}},
		{"missing webhook secret", "app settings", "NIGHTSHIFT_WEBHOOK_SECRET is not set", func(s string) string {
			return strings.Replace(s, "    NIGHTSHIFT_WEBHOOK_SECRET: webhookSecret\n", "", 1)
		}},
		{"webhook secret not secure", "app settings", "@secure()", func(s string) string {
			return strings.Replace(s, "@secure()\n", "", 1)
		}},
		{"missing client id", "app settings", "AzureWebJobsStorage__clientId is not set", func(s string) string {
			return strings.Replace(s, "    AzureWebJobsStorage__clientId: identity.properties.clientId\n", "", 1)
		}},
		{"SSRF guard off", "app settings", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE", func(s string) string {
			return strings.Replace(s, "NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'false'", "NIGHTSHIFT_FETCH_ALLOW_PRIVATE: 'true'", 1)
		}},
		{"plain-http webhooks", "app settings", "NIGHTSHIFT_WEBHOOK_ALLOW_HTTP", func(s string) string {
			return strings.Replace(s, "NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'", "NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'true'", 1)
		}},
		{"core settings overridable", "app settings", "AzureWebJobsStorage__clientId can be overridden", func(s string) string {
			// Move extraAppSettings after the core object: it would then win.
			s = strings.Replace(s, "union(defaultAppSettings, extraAppSettings, {", "union(defaultAppSettings, {", 1)
			return strings.Replace(s, "    NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'\n  })\n", "    NIGHTSHIFT_WEBHOOK_ALLOW_HTTP: 'false'\n  }, extraAppSettings)\n", 1)
		}},
		{"default drifted", "app settings", "NIGHTSHIFT_SCHEDULE_MAINTENANCE is \"0 0 * * * *\"", func(s string) string {
			return strings.Replace(s, "NIGHTSHIFT_SCHEDULE_MAINTENANCE: '0 30 2 * * *'", "NIGHTSHIFT_SCHEDULE_MAINTENANCE: '0 0 * * * *'", 1)
		}},
		{"connection string", "app settings", "shared keys are disabled", func(s string) string {
			return strings.Replace(s, "    AzureWebJobsStorage__credential: 'managedidentity'\n",
				"    AzureWebJobsStorage__credential: 'managedidentity'\n    AzureWebJobsStorage: 'DefaultEndpointsProtocol=https'\n", 1)
		}},
		{"wrong runtime", "flex function app", "runtime.name", func(s string) string {
			return strings.Replace(s, "name: 'custom'", "name: 'node'", 1)
		}},
		{"deployment with system identity", "flex function app", "authentication.type", func(s string) string {
			return strings.Replace(s, "type: 'UserAssignedIdentity'", "type: 'SystemAssignedIdentity'", 1)
		}},
		{"fixed instance count", "flex function app", "maximumInstanceCount", func(s string) string {
			return strings.Replace(s, "maximumInstanceCount: maximumInstanceCount", "maximumInstanceCount: 100", 1)
		}},
		{"consumption plan", "flex function app", "sku.name", func(s string) string {
			return strings.Replace(s, "name: 'FC1'", "name: 'Y1'", 1)
		}},
		{"local auth on", "monitoring", "DisableLocalAuth", func(s string) string {
			return strings.Replace(s, "DisableLocalAuth: true", "DisableLocalAuth: false", 1)
		}},
		{"no API output", "outputs", "NIGHTSHIFT_API_BASE_URL", func(s string) string {
			i := strings.Index(s, "output NIGHTSHIFT_API_BASE_URL")
			return s[:i]
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			weak := c.mutate(src)
			if weak == src {
				t.Fatal("the mutation did not change the template; update the test")
			}
			m, problems := parseBicep(t, c.name, []byte(weak))
			if len(problems) > 0 {
				t.Fatalf("weakened copy does not parse: %v", problems)
			}
			var hits []string
			for _, v := range runPolicies(m, e) {
				if strings.HasPrefix(v, c.policy+": ") && strings.Contains(v, c.want) {
					hits = append(hits, v)
				}
			}
			if len(hits) == 0 {
				t.Errorf("policy %q did not report %q; all violations:\n  %s", c.policy, c.want, strings.Join(runPolicies(m, e), "\n  "))
			}
		})
	}
}

// TestGoSettingsCollected checks the Setting* scan itself: it must find the storage
// settings with their resolved values (including those built from other constants).
func TestGoSettingsCollected(t *testing.T) {
	got, err := collectGoSettings(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, s := range got {
		values[s.Const] = s.Value
	}
	const st = "github.com/nightshift-jobs/nightshift/storage."
	want := map[string]string{
		st + "SettingStorage":         "AzureWebJobsStorage",
		st + "SettingAccountName":     "AzureWebJobsStorage__accountName",
		st + "SettingQueueServiceURI": "AzureWebJobsStorage__queueServiceUri",
		st + "SettingClientID":        "AzureWebJobsStorage__clientId",
		st + "SettingNamePrefix":      "NIGHTSHIFT_NAME_PREFIX",
	}
	for k, v := range want {
		if values[k] != v {
			t.Errorf("%s = %q, want %q", k, values[k], v)
		}
	}
	t.Logf("%d Setting* constants: %v", len(got), got)
}

// TestGoSettingsResolveAcrossPackages uses a synthetic module to check cross-package and
// chained resolution, and that an unresolvable setting is an error, not a silent skip.
func TestGoSettingsResolveAcrossPackages(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.22\n")
	write("a/a.go", "package a\n\nconst (\n\tbase = \"Base\"\n\tSettingA = base + \"__x\"\n\tDefaultA = 64 << 20\n)\n")
	write("b/b.go", "package b\n\nimport st \"example.com/m/a\"\n\nconst SettingB = st.SettingA + \"__y\"\n")
	write("b/b_test.go", "package b\n\nconst SettingTestOnly = \"ignored\"\n")
	got, err := collectGoSettings(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []goSetting{
		{Const: "example.com/m/a.SettingA", Value: "Base__x", Default: "67108864", HasDefault: true},
		{Const: "example.com/m/b.SettingB", Value: "Base__x__y"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	write("c/c.go", "package c\n\nimport \"os\"\n\nconst SettingC = os.DevNull + missing\n")
	if _, err := collectGoSettings(root); err == nil || !strings.Contains(err.Error(), "SettingC") {
		t.Errorf("unresolvable setting: err = %v, want an error naming SettingC", err)
	}
}

// TestParametersFile checks main.parameters.json against the param declarations: valid
// JSON, every parameter declared, every parameter without a default supplied.
func TestParametersFile(t *testing.T) {
	m, _ := parseBicep(t, mainBicep, readFile(t, mainBicep))
	for _, v := range checkParametersFile(m, readFile(t, mainParamFile)) {
		t.Error(v)
	}
	// And the check fails when it should.
	weak := []byte(`{"parameters": {"environmentName": {"value": "x"}, "noSuchParam": {"value": 1}}}`)
	if v := checkParametersFile(m, weak); !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, "noSuchParam") }) {
		t.Errorf("undeclared parameter not reported: %v", v)
	}
	if v := checkParametersFile(m, []byte(`{"parameters": {}}`)); !slices.ContainsFunc(v, func(s string) bool { return strings.Contains(s, "environmentName") }) {
		t.Errorf("missing required parameter not reported: %v", v)
	}
}

func checkParametersFile(m *bicepModel, raw []byte) []string {
	var doc struct {
		Parameters map[string]struct {
			Value     any             `json:"value"`
			Reference json.RawMessage `json:"reference"`
		} `json:"parameters"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return []string{"parameters file is not valid JSON: " + err.Error()}
	}
	var out []string
	declared := map[string]bicepParam{}
	for _, p := range m.params {
		declared[p.name] = p
	}
	for name, v := range doc.Parameters {
		p, ok := declared[name]
		if !ok {
			out = append(out, "parameters file sets "+name+", which main.bicep does not declare")
			continue
		}
		if s, isString := v.Value.(string); isString && strings.HasPrefix(s, "${") {
			continue // azd substitutes environment values; the type is checked by ARM
		}
		var okType bool
		switch p.typ {
		case "string":
			_, okType = v.Value.(string)
		case "int":
			_, okType = v.Value.(float64)
		case "bool":
			_, okType = v.Value.(bool)
		default:
			okType = true
		}
		if !okType && v.Reference == nil {
			out = append(out, fmt.Sprintf("parameter %s: value %v is not a %s", name, v.Value, p.typ))
		}
	}
	for _, p := range m.params {
		if _, ok := doc.Parameters[p.name]; !ok && !p.hasDefault {
			out = append(out, "parameter "+p.name+" has no default and is missing from the parameters file")
		}
	}
	return out
}
