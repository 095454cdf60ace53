package infra

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
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

// Built-in role definition GUIDs (Azure built-in roles, https://learn.microsoft.com/azure/role-based-access-control/built-in-roles;
// the same in every tenant).
const (
	roleStorageBlobDataOwner         = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
	roleStorageBlobDataContributor   = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
	roleStorageBlobDataReader        = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
	roleStorageBlobDelegator         = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
	roleStorageQueueDataContributor  = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
	roleMonitoringMetricsPublisher   = "3913510d-42f4-4e42-8a64-420c390055eb"
	roleKeyVaultCryptoUser           = "12338af0-0e69-4776-bea7-57ae8d297424"
	roleKeyVaultSecretsUser          = "4633458b-17de-408a-b874-0445c86b69e6"
	typeStorageAccount               = "Microsoft.Storage/storageAccounts"
	typeQueue                        = "Microsoft.Storage/storageAccounts/queueServices/queues"
	typeContainer                    = "Microsoft.Storage/storageAccounts/blobServices/containers"
	typeBlobService                  = "Microsoft.Storage/storageAccounts/blobServices"
	typeQueueService                 = "Microsoft.Storage/storageAccounts/queueServices"
	typeVault                        = "Microsoft.KeyVault/vaults"
	typeVaultKey                     = "Microsoft.KeyVault/vaults/keys"
	typeVaultSecret                  = "Microsoft.KeyVault/vaults/secrets"
	typeDiagnosticSettings           = "Microsoft.Insights/diagnosticSettings"
	typePublishingPolicy             = "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
	typePrivateEndpoint              = "Microsoft.Network/privateEndpoints"
	typeIdentity                     = "Microsoft.ManagedIdentity/userAssignedIdentities"
	typeRoleAssignment               = "Microsoft.Authorization/roleAssignments"
	typeRoleDefinition               = "Microsoft.Authorization/roleDefinitions"
	typeAppInsights                  = "Microsoft.Insights/components"
	typeWorkspace                    = "Microsoft.OperationalInsights/workspaces"
	typePlan                         = "Microsoft.Web/serverfarms"
	typeSite                         = "Microsoft.Web/sites"
	typeSiteConfig                   = "Microsoft.Web/sites/config"
	settingAppInsightsConnection     = "APPLICATIONINSIGHTS_CONNECTION_STRING"
	settingAppInsightsAuthentication = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
	settingAzureClientID             = "AZURE_CLIENT_ID"
	settingWebhookSecret             = "NIGHTSHIFT_WEBHOOK_SECRET" // retired: see retiredSettings
	settingWebhookSecrets            = "NIGHTSHIFT_WEBHOOK_SECRETS"
	settingEncryptionKeyURL          = "NIGHTSHIFT_ENCRYPTION_KEY_URL"
	settingCSVContainers             = "NIGHTSHIFT_CSV_CONTAINERS"
	settingCallbackQueues            = "NIGHTSHIFT_CALLBACK_QUEUES"
)

// functionsHostContainers are the Functions host's own blob containers with identity-based
// AzureWebJobsStorage: azure-webjobs-hosts (host id and singleton/timer leases, timer
// status) and azure-webjobs-secrets (function keys). The template creates them so that the
// identity's blob role can be scoped to containers instead of the account.
var functionsHostContainers = []string{"azure-webjobs-hosts", "azure-webjobs-secrets"}

// retiredSettings must not be set by the deployment any more, whatever the Go code reads.
// They are not required even while a Setting* constant still has the value (no staleness
// check: the entry stays as a guard against the setting coming back).
var retiredSettings = map[string]string{
	settingWebhookSecret: "one app-wide plain-text webhook secret; replaced by NIGHTSHIFT_WEBHOOK_SECRETS, a Key Vault reference to per-origin secrets",
}

// flexDeprecatedSettings must not appear on a Flex Consumption app. Sources:
// the Flex Consumption plan's deprecated settings (https://learn.microsoft.com/azure/azure-functions/functions-app-settings) and the
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
	storage.SettingStorage:            "connection-string form; the account has shared keys disabled, so the identity-based AzureWebJobsStorage__* settings are used",
	storage.SettingAccountName:        "alternative to AzureWebJobsStorage__blobServiceUri/__queueServiceUri, which the template sets (they also work outside the public cloud)",
	storage.SettingNamePrefix:         "only for sharing one storage account between deployments or test runs; a Bicep deployment owns its account and packages unprefixed queue names",
	"AzureFunctionsWebHost__hostid":   "read by the local Functions host (funchost) only; Azure derives the host id from the app name",
	"NIGHTSHIFT_LOCAL_FUNCTION_KEY":   "the local Functions host's (funchost) function key; Azure manages function keys itself",
	"FUNCTIONS_CUSTOMHANDLER_PORT":    "set by the Functions host for the handler process at start-up, not an app setting",
	seal.SettingLocalKeys:             "local keys are for development and the local host; on Azure the key-encryption key is the Key Vault key of NIGHTSHIFT_ENCRYPTION_KEY_URL (both set is an error)",
	"NIGHTSHIFT_WORKER_CONCURRENCY":   "worker mode only (handler worker); the function app's budget is host.json's",
	"NIGHTSHIFT_WORKER_DRAIN_TIMEOUT": "worker mode only; the Functions host stops the handler itself",
	"NIGHTSHIFT_WORKER_HEALTH_ADDR":   "worker mode only; the Functions host has its own health",
	"NIGHTSHIFT_WORKER_HOST_JSON":     "worker mode only; the function app reads host.json from its package",
	"NIGHTSHIFT_WORKER_QUEUES":        "worker mode only; the function app listens on what its function.json files bind",
	"NIGHTSHIFT_WORKER_TIMERS":        "worker mode only; the function app's timers are its timer triggers",
	"NIGHTSHIFT_UI_TOKEN":             "the dashboard's token for `nightshift ui` on an operator's machine; the deployed app serves no dashboard",
	"NIGHTSHIFT_LIMITS":               "optional: flow-control limits are usually set in Go (WorkerOptions.Limits); an operator adds this app setting to override a kind's limits without a rebuild (docs/flow-control.md)",
	"NIGHTSHIFT_SCHEDULE_":            "a prefix, not a setting: the concrete NIGHTSHIFT_SCHEDULE_<NAME> settings are the %…% references of generated function.json files, which TestFunctionBindingsExistInTemplate requires the template to set",
}

// alwaysRequiredSettings are set by the template for the platform and azidentity, whether or
// not a Go constant names them.
var alwaysRequiredSettings = []string{
	storage.SettingCredential,
	storage.SettingClientID,
	settingAzureClientID,
	settingAppInsightsConnection,
	settingAppInsightsAuthentication,
	settingWebhookSecrets,
	settingCSVContainers,
	settingCallbackQueues,
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
		_, skip := notAppSettings[s.Value]
		_, retired := retiredSettings[s.Value]
		if !skip && !retired {
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
	{"key vault", checkKeyVault},
	{"diagnostic settings", checkDiagnostics},
	{"publishing credentials", checkPublishingCredentials},
	{"network", checkNetwork},
}

// runPolicies runs every main.bicep policy and returns "policy: violation" lines.
func runPolicies(m *bicepModel, e expectations) []string { return runPolicySet(policies, m, e) }

// runPolicySet runs each policy of set and returns "policy: violation" lines.
func runPolicySet(set []policy, m *bicepModel, e expectations) []string {
	var out []string
	for _, p := range set {
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

// checkRoleAssignments: least privilege for the one identity. No role assignment is left at
// the (broader) deployment scope; Storage Blob Data Owner appears nowhere; the identity's
// blob data roles are scoped to containers, never to the account, and Storage Blob Data
// Contributor covers every container the template creates; the other roles are assigned
// unconditionally at their resource (queue data and the user delegation key on the storage
// account, metrics on App Insights), the Key Vault roles on the vault or the key or secret
// they are for.
func checkRoleAssignments(m *bicepModel, _ expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	assignments := m.ofType(typeRoleAssignment)
	for _, r := range assignments {
		if m.prop(r.body, "scope") == nil {
			out = append(out, fmt.Sprintf("role assignment %s has no scope: it would apply to the whole resource group", r.symbol))
		}
	}
	if slices.Contains(m.guidsIn(m.tree.RootNode()), roleStorageBlobDataOwner) {
		out = append(out, "Storage Blob Data Owner ("+roleStorageBlobDataOwner+") appears in the template: it also manages ACLs and ownership; use Storage Blob Data Contributor scoped to containers")
	}
	out = append(out, checkBlobRoles(m, id)...)
	out = append(out, checkIndexTagsRole(m, id)...)
	return append(out, checkRequiredRoles(m, id)...)
}

// indexTagActions are the data actions of the blob index tags on the status records
// (docs/storage-layout.md); no built-in data role short of Owner has them.
var indexTagActions = []string{
	"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read",
	"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write",
	"Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action",
}

// checkIndexTagsRole: a custom role with exactly the index-tag data actions, assigned to
// the identity on the status container and on the dead-letters container (status and
// dead-letter writes carry their tags in the same Put, and listings find records by them).
func checkIndexTagsRole(m *bicepModel, id string) []string {
	var out []string
	for _, c := range []struct{ container, what string }{
		{storage.StatusContainer, "status writes set blob index tags"},
		{storage.DeadLettersContainer, "dead-letter writes set blob index tags"},
	} {
		if !hasIndexTagsRole(m, id, c.container) {
			out = append(out, fmt.Sprintf("no role assignment of a custom role with exactly the data actions %s to %s.properties.principalId on the %s container: %s", strings.Join(indexTagActions, ", "), id, c.container, c.what))
		}
	}
	return out
}

// hasIndexTagsRole reports whether the index-tags role is assigned to id on container.
func hasIndexTagsRole(m *bicepModel, id, container string) bool {
	for _, def := range m.ofType(typeRoleDefinition) {
		body := m.text(def.body)
		if strings.Count(body, "Microsoft.Storage/") != len(indexTagActions) ||
			slices.ContainsFunc(indexTagActions, func(a string) bool { return !strings.Contains(body, "'"+a+"'") }) {
			continue
		}
		for _, r := range m.ofType(typeRoleAssignment) {
			scope := m.scopeOf(r)
			if r.condition != nil || scope == nil || !strings.EqualFold(scope.typ, typeContainer) ||
				m.text(m.path(r.body, "properties", "roleDefinitionId")) != def.symbol+".id" ||
				m.text(m.path(r.body, "properties", "principalId")) != id+".properties.principalId" {
				continue
			}
			names := m.names(scope)
			n := m.prop(r.body, "scope")
			if n.Kind() == "subscript_expression" {
				if i, err := strconv.Atoi(m.text(n.ChildByFieldName("index"))); err == nil && i < len(names) {
					names = names[i : i+1]
				}
			}
			if len(names) == 1 && names[0] == container {
				return true
			}
		}
	}
	return false
}

// roleAssignmentsTo returns the role assignments of a role GUID to the identity id.
func (m *bicepModel) roleAssignmentsTo(id, guid string) []*bicepResource {
	var rs []*bicepResource
	for _, r := range m.ofType(typeRoleAssignment) {
		if slices.Contains(m.guidsIn(m.path(r.body, "properties", "roleDefinitionId")), guid) &&
			m.text(m.path(r.body, "properties", "principalId")) == id+".properties.principalId" {
			rs = append(rs, r)
		}
	}
	return rs
}

// checkBlobRoles: every blob data role of the identity is scoped to a container, and Storage
// Blob Data Contributor covers every container the template creates.
func checkBlobRoles(m *bicepModel, id string) []string {
	var out []string
	for _, guid := range []string{roleStorageBlobDataOwner, roleStorageBlobDataContributor, roleStorageBlobDataReader} {
		for _, r := range m.roleAssignmentsTo(id, guid) {
			if sc := m.scopeOf(r); sc == nil || !strings.EqualFold(sc.typ, typeContainer) {
				out = append(out, fmt.Sprintf("%s grants a blob data role (%s) to the app on %q: scope it to a container", r.symbol, guid, m.text(m.prop(r.body, "scope"))))
			}
		}
	}
	contributor := m.roleAssignmentsTo(id, roleStorageBlobDataContributor)
	for _, c := range m.ofType(typeContainer) {
		if !c.existing && !slices.ContainsFunc(contributor, func(r *bicepResource) bool { return m.coversEach(r, c) }) {
			out = append(out, fmt.Sprintf("no role assignment of Storage Blob Data Contributor (%s) to %s.properties.principalId on each container of %s", roleStorageBlobDataContributor, id, c.symbol))
		}
	}
	return out
}

// checkRequiredRoles: the identity's other roles, each unconditional (or conditional
// exactly like the resource it is for), not a loop, at one of its allowed scope types.
func checkRequiredRoles(m *bicepModel, id string) []string {
	var out []string
	required := []struct {
		role, guid string
		scopeTypes []string
	}{
		{"Storage Queue Data Contributor", roleStorageQueueDataContributor, []string{typeStorageAccount}},
		{"Storage Blob Delegator", roleStorageBlobDelegator, []string{typeStorageAccount}},
		{"Monitoring Metrics Publisher", roleMonitoringMetricsPublisher, []string{typeAppInsights}},
		{"Key Vault Crypto User", roleKeyVaultCryptoUser, []string{typeVault, typeVaultKey}},
		{"Key Vault Secrets User", roleKeyVaultSecretsUser, []string{typeVault, typeVaultSecret}},
	}
	for _, req := range required {
		found := false
		var near []string
		for _, r := range m.roleAssignmentsTo(id, req.guid) {
			scope := m.scopeOf(r)
			switch {
			case r.loop != nil:
				near = append(near, r.symbol+" is a loop")
			case scope == nil || !slices.ContainsFunc(req.scopeTypes, func(t string) bool { return strings.EqualFold(scope.typ, t) }):
				near = append(near, fmt.Sprintf("%s is scoped to %q, want a %s", r.symbol, m.text(m.prop(r.body, "scope")), strings.Join(req.scopeTypes, " or ")))
			case r.condition != nil && (scope.condition == nil || m.text(r.condition) != m.text(scope.condition)):
				// Conditional only together with the resource it is for (the key exists only
				// with enableEncryption).
				near = append(near, r.symbol+" is conditional")
			case m.text(m.path(r.body, "properties", "principalType")) != "'ServicePrincipal'":
				near = append(near, r.symbol+" has no principalType 'ServicePrincipal'")
			default:
				found = true
			}
		}
		if !found {
			v := fmt.Sprintf("no role assignment of %s (%s) to %s.properties.principalId scoped to a %s", req.role, req.guid, id, strings.Join(req.scopeTypes, " or "))
			if len(near) > 0 {
				v += " (" + strings.Join(near, "; ") + ")"
			}
			out = append(out, v)
		}
	}
	return out
}

// coversEach reports whether the role assignment r applies to every instance of resource
// target: the same single resource (scope: target), or, for a loop, a loop over the same
// list with scope target[i] (i the assignment's index variable). Neither may be conditional.
func (m *bicepModel) coversEach(r, target *bicepResource) bool {
	if r.condition != nil || target.condition != nil || m.scopeOf(r) != target {
		return false
	}
	scope := m.prop(r.body, "scope")
	if target.loop == nil {
		return r.loop == nil && scope.Kind() == "identifier"
	}
	if r.loop == nil || scope.Kind() != "subscript_expression" {
		return false
	}
	_, targetIter := m.loopParts(target.loop)
	_, iter := m.loopParts(r.loop)
	index := ""
	for i := uint(0); i < r.loop.NamedChildCount(); i++ {
		if c := r.loop.NamedChild(i); c.Kind() == "for_loop_parameters" && c.NamedChildCount() == 2 {
			index = m.text(c.NamedChild(1))
		}
	}
	return index != "" && m.text(scope.ChildByFieldName("index")) == index && m.text(iter) == m.text(targetIter)
}

// resourceNames returns every name created by resources of a type (`existing` references
// create nothing and are skipped).
func resourceNames(m *bicepModel, typ string) []string { return namesOfType(m, typ, false) }

// namesOfType lists the names of the resources of type typ, with the `existing` references
// when withExisting.
func namesOfType(m *bicepModel, typ string, withExisting bool) []string {
	var out []string
	for _, r := range m.ofType(typ) {
		if withExisting || !r.existing {
			out = append(out, m.names(r)...)
		}
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
// storage.Layout{}.Containers() plus the Functions host's containers plus exactly one more,
// the Flex deployment container that functionAppConfig points at.
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
	if d := setDiff(literal, append(slices.Clone(e.containers), functionsHostContainers...)); d != "" {
		out = append(out, "data containers differ from storage.Layout plus the host's containers: "+d)
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
			case n.Kind() == "ternary_expression":
				// cond ? {…} : {…}: the keys of either branch may be set.
				flatten(n.ChildByFieldName("consequence"), depth+1)
				flatten(n.ChildByFieldName("alternative"), depth+1)
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
	return append(out, checkSecretSettings(m, got)...)
}

// checkSecretSettings: no retired setting is set, and secrets reach the app only as Key
// Vault references: no app setting carries the value of a @secure() parameter (it would be
// readable by anyone who can read the app's configuration).
func checkSecretSettings(m *bicepModel, got map[string]*sitter.Node) []string {
	var out []string
	for name, why := range retiredSettings {
		if _, ok := got[name]; ok {
			out = append(out, fmt.Sprintf("app setting %s is set, but it is retired: %s", name, why))
		}
	}
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		walk(got[name], func(c *sitter.Node) {
			if p := m.param(m.text(c)); c.Kind() == "identifier" && p != nil && p.secure {
				out = append(out, fmt.Sprintf("app setting %s holds the @secure() parameter %s in plain text: store it in Key Vault and set a Key Vault reference", name, p.name))
			}
		})
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
		{"missing blob role on the deployment container", "role assignments", "Storage Blob Data Contributor (" + roleStorageBlobDataContributor + ") to identity.properties.principalId on each container of deploymentContainer", func(s string) string {
			return removeResource(s, "appBlobDataContributorDeployment")
		}},
		{"missing blob role on the host containers", "role assignments", "on each container of hostContainers", func(s string) string {
			return removeResource(s, "appBlobDataContributorHost")
		}},
		{"blob role on some data containers only", "role assignments", "on each container of dataContainers", func(s string) string {
			return strings.Replace(s, "  for (name, i) in dataContainerNames: {\n    name: guid(dataContainers[i].id", "  for (name, i) in take(dataContainerNames, 2): {\n    name: guid(dataContainers[i].id", 1)
		}},
		{"blob role at account scope", "role assignments", "grants a blob data role (" + roleStorageBlobDataContributor + ") to the app on \"storage\"", func(s string) string {
			i := strings.Index(s, "resource appBlobDataContributorDeployment ")
			return s[:i] + strings.Replace(s[i:], "  scope: deploymentContainer\n", "  scope: storage\n", 1)
		}},
		{"blob data owner back", "role assignments", "Storage Blob Data Owner (" + roleStorageBlobDataOwner + ") appears", func(s string) string {
			return strings.Replace(s, "storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'", "storageBlobDataContributor: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'", 1)
		}},
		{"no index tags role", "role assignments", "status writes set blob index tags", func(s string) string {
			return removeResource(s, "appBlobIndexTags")
		}},
		{"index tags role on the results container", "role assignments", "status writes set blob index tags", func(s string) string {
			return strings.Replace(s, "  scope: dataContainers[0]\n  properties: {\n    roleDefinitionId: blobIndexTagsRole.id\n    principalId: identity", "  scope: dataContainers[1]\n  properties: {\n    roleDefinitionId: blobIndexTagsRole.id\n    principalId: identity", 1)
		}},
		{"no dead-letter index tags role", "role assignments", "dead-letter writes set blob index tags", func(s string) string {
			return removeResource(s, "appDeadLetterIndexTags")
		}},
		{"dead-letter index tags role on the payloads container", "role assignments", "dead-letter writes set blob index tags", func(s string) string {
			return strings.Replace(s, "  scope: dataContainers[2]\n  properties: {\n    roleDefinitionId: blobIndexTagsRole.id\n    principalId: identity", "  scope: dataContainers[3]\n  properties: {\n    roleDefinitionId: blobIndexTagsRole.id\n    principalId: identity", 1)
		}},
		{"index tags role with every blob action", "role assignments", "status writes set blob index tags", func(s string) string {
			return strings.Replace(s, "'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action'\n", "'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action'\n          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*'\n", 1)
		}},
		{"no delegation key role", "role assignments", "Storage Blob Delegator", func(s string) string {
			return removeResource(s, "appBlobDelegator")
		}},
		{"metrics role on the wrong scope", "role assignments", "Monitoring Metrics Publisher", func(s string) string {
			return strings.Replace(s, "  scope: appInsights\n", "  scope: storage\n", 1)
		}},
		{"role for the wrong principal", "role assignments", "Storage Queue Data Contributor", func(s string) string {
			i := strings.Index(s, "resource appQueueDataContributor ")
			return s[:i] + strings.Replace(s[i:], "principalId: identity.properties.principalId", "principalId: principalId", 1)
		}},
		{"role at resource-group scope", "role assignments", "has no scope", func(s string) string {
			i := strings.Index(s, "resource userBlobDataContributor ")
			return s[:i] + strings.Replace(s[i:], "  scope: storage\n", "", 1)
		}},
		{"missing crypto user", "role assignments", "Key Vault Crypto User", func(s string) string {
			return removeResource(s, "appKeyVaultCryptoUser")
		}},
		{"crypto user on the storage account", "role assignments", "Key Vault Crypto User", func(s string) string {
			i := strings.Index(s, "resource appKeyVaultCryptoUser ")
			return s[:i] + strings.Replace(s[i:], "  scope: kek\n", "  scope: storage\n", 1)
		}},
		{"missing secrets user", "role assignments", "Key Vault Secrets User", func(s string) string {
			return removeResource(s, "appKeyVaultSecretsUser")
		}},
		{"secrets user only with a parameter", "role assignments", "Key Vault Secrets User", func(s string) string {
			return strings.Replace(s, "resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {", "resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableEncryption) {", 1)
		}},
		{"deprecated setting", "no flex-deprecated settings", "FUNCTIONS_WORKER_RUNTIME", func(s string) string {
			return strings.Replace(s, "    AzureWebJobsStorage__credential: 'managedidentity'\n",
				"    AzureWebJobsStorage__credential: 'managedidentity'\n    FUNCTIONS_WORKER_RUNTIME: 'custom'\n", 1)
		}},
		{"run from package", "no flex-deprecated settings", "WEBSITE_RUN_FROM_PACKAGE", func(s string) string {
			return strings.Replace(s, "      minTlsVersion: '1.2'\n",
				"      minTlsVersion: '1.2'\n      appSettings: [\n        {\n          name: 'WEBSITE_RUN_FROM_PACKAGE'\n          value: '1'\n        }\n      ]\n", 1)
		}},
		{"missing webhook secrets", "app settings", "NIGHTSHIFT_WEBHOOK_SECRETS is not set", func(s string) string {
			return strings.Replace(s, "    NIGHTSHIFT_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${webhookSecretsSecret.properties.secretUri})'\n", "", 1)
		}},
		{"plain webhook secret back", "app settings", "NIGHTSHIFT_WEBHOOK_SECRET is set, but it is retired", func(s string) string {
			return strings.Replace(s, "    NIGHTSHIFT_CSV_CONTAINERS: csvContainers\n", "    NIGHTSHIFT_CSV_CONTAINERS: csvContainers\n    NIGHTSHIFT_WEBHOOK_SECRET: 'x'\n", 1)
		}},
		{"webhook secrets in plain text", "app settings", "holds the @secure() parameter webhookSecrets in plain text", func(s string) string {
			return strings.Replace(s, "NIGHTSHIFT_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${webhookSecretsSecret.properties.secretUri})'", "NIGHTSHIFT_WEBHOOK_SECRETS: webhookSecrets", 1)
		}},
		{"webhook secrets not a Key Vault reference", "key vault", "want a Key Vault reference", func(s string) string {
			return strings.Replace(s, "NIGHTSHIFT_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${webhookSecretsSecret.properties.secretUri})'", "NIGHTSHIFT_WEBHOOK_SECRETS: webhookSecretsSecret.properties.secretUri", 1)
		}},
		{"webhook secrets parameter not secure", "key vault", "does not come from a @secure() parameter", func(s string) string {
			return strings.Replace(s, "@secure()\n@description('Webhook signing secrets", "@description('Webhook signing secrets", 1)
		}},
		{"webhook secrets overridable", "app settings", "NIGHTSHIFT_WEBHOOK_SECRETS can be overridden", func(s string) string {
			s = strings.Replace(s, "    NIGHTSHIFT_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${webhookSecretsSecret.properties.secretUri})'\n", "", 1)
			return strings.Replace(s, "var defaultAppSettings = {\n", "var defaultAppSettings = {\n  NIGHTSHIFT_WEBHOOK_SECRETS: '@Microsoft.KeyVault(SecretUri=${webhookSecretsSecret.properties.secretUri})'\n", 1)
		}},
		{"vault with access policies", "key vault", "enableRbacAuthorization", func(s string) string {
			return strings.Replace(s, "enableRbacAuthorization: true", "enableRbacAuthorization: false", 1)
		}},
		{"vault without purge protection", "key vault", "enablePurgeProtection", func(s string) string {
			return strings.Replace(s, "enablePurgeProtection: true", "enablePurgeProtection: false", 1)
		}},
		{"vault without soft delete", "key vault", "enableSoftDelete", func(s string) string {
			return strings.Replace(s, "enableSoftDelete: true", "enableSoftDelete: false", 1)
		}},
		{"small key", "key vault", "keySize", func(s string) string {
			return strings.Replace(s, "keySize: 3072", "keySize: 2048", 1)
		}},
		{"key usable for decrypt", "key vault", "keyOps", func(s string) string {
			return strings.Replace(s, "      'unwrapKey'\n", "      'unwrapKey'\n      'decrypt'\n", 1)
		}},
		{"EC key", "key vault", "kty", func(s string) string {
			return strings.Replace(s, "kty: 'RSA'", "kty: 'EC'", 1)
		}},
		{"encryption off by default", "key vault", "defaults to true", func(s string) string {
			return strings.Replace(s, "param enableEncryption bool = true", "param enableEncryption bool = false", 1)
		}},
		{"no key URL setting", "key vault", "NIGHTSHIFT_ENCRYPTION_KEY_URL is not set", func(s string) string {
			return strings.Replace(s, "    NIGHTSHIFT_ENCRYPTION_KEY_URL: kek.properties.keyUri\n", "", 1)
		}},
		{"key URL of another thing", "key vault", "want kek.properties.keyUri", func(s string) string {
			return strings.Replace(s, "    NIGHTSHIFT_ENCRYPTION_KEY_URL: kek.properties.keyUri\n", "    NIGHTSHIFT_ENCRYPTION_KEY_URL: vault.properties.vaultUri\n", 1)
		}},
		{"references with the wrong identity", "key vault", "keyVaultReferenceIdentity", func(s string) string {
			return strings.Replace(s, "    keyVaultReferenceIdentity: identity.id\n", "", 1)
		}},
		{"no blob diagnostics", "diagnostic settings", "storage blob service blobService has no", func(s string) string {
			return removeResource(s, "blobDiagnostics")
		}},
		{"no queue diagnostics", "diagnostic settings", "storage queue service queueService has no", func(s string) string {
			return removeResource(s, "queueDiagnostics")
		}},
		{"no app diagnostics", "diagnostic settings", "function app functionApp has no", func(s string) string {
			return removeResource(s, "functionAppDiagnostics")
		}},
		{"no vault diagnostics", "diagnostic settings", "key vault vault has no", func(s string) string {
			return removeResource(s, "vaultDiagnostics")
		}},
		{"no delete logs", "diagnostic settings", "StorageDelete is not enabled", func(s string) string {
			return strings.Replace(s, "    category: 'StorageDelete'\n    enabled: true\n", "    category: 'StorageDelete'\n    enabled: false\n", 1)
		}},
		{"no transaction metrics", "diagnostic settings", "Transaction is not enabled", func(s string) string {
			return strings.Replace(s, "    category: 'Transaction'\n", "    category: 'Capacity'\n", 1)
		}},
		{"no audit events", "diagnostic settings", "AuditEvent is not enabled", func(s string) string {
			return strings.Replace(s, "category: 'AuditEvent'", "category: 'AzurePolicyEvaluationDetails'", 1)
		}},
		{"no function app logs", "diagnostic settings", "FunctionAppLogs is not enabled", func(s string) string {
			return strings.Replace(s, "category: 'FunctionAppLogs'", "category: 'AppServiceAuthenticationLogs'", 1)
		}},
		{"diagnostics elsewhere", "diagnostic settings", "key vault vault has no", func(s string) string {
			i := strings.Index(s, "resource vaultDiagnostics ")
			return s[:i] + strings.Replace(s[i:], "  scope: vault\n", "  scope: storage\n", 1)
		}},
		{"ftp allowed", "publishing credentials", `"ftp"`, func(s string) string {
			i := strings.Index(s, "resource ftpPublishingPolicy ")
			return s[:i] + strings.Replace(s[i:], "allow: false", "allow: true", 1)
		}},
		{"no scm policy", "publishing credentials", `"scm"`, func(s string) string {
			return removeResource(s, "scmPublishingPolicy")
		}},
		{"storage always open", "network", "storage: properties.networkAcls.defaultAction is \"'Allow'\"", func(s string) string {
			return strings.Replace(s, "      defaultAction: networkDefaultAction\n      ipRules: storageIpRules\n", "      defaultAction: 'Allow'\n      ipRules: storageIpRules\n", 1)
		}},
		{"vault always open", "network", "vault: properties.networkAcls.defaultAction", func(s string) string {
			return strings.Replace(s, "      defaultAction: networkDefaultAction\n      ipRules: vaultIpRules\n", "      defaultAction: 'Allow'\n      ipRules: vaultIpRules\n", 1)
		}},
		{"network parameter not restricted", "network", "want a parameter @allowed", func(s string) string {
			return strings.Replace(s, "@allowed([\n  'Allow'\n  'Deny'\n])\n", "", 1)
		}},
		{"no ip rules", "network", "storage: properties.networkAcls.ipRules", func(s string) string {
			return strings.Replace(s, "      ipRules: storageIpRules\n", "", 1)
		}},
		{"no queue private endpoint", "network", `for "queue"`, func(s string) string {
			return removeResource(s, "queuePrivateEndpoint")
		}},
		{"vault endpoint always on", "network", `for "vault"`, func(s string) string {
			return strings.Replace(s, "resource vaultPrivateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = if (!empty(privateEndpointSubnetId)) {", "resource vaultPrivateEndpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {", 1)
		}},
		{"no VNet integration", "network", "virtualNetworkSubnetId", func(s string) string {
			return strings.Replace(s, "    virtualNetworkSubnetId: empty(appSubnetId) ? null : appSubnetId\n", "", 1)
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

var azdVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:=([^}]*))?\}`)

// azdSubstitute does what azd does to main.parameters.json before parsing it: every
// ${NAME} or ${NAME=default} is replaced by the environment value, verbatim (no escaping).
func azdSubstitute(raw []byte, env map[string]string) []byte {
	return azdVarRE.ReplaceAllFunc(raw, func(ref []byte) []byte {
		sm := azdVarRE.FindSubmatch(ref)
		if v, ok := env[string(sm[1])]; ok {
			return []byte(v)
		}
		return sm[2]
	})
}

// TestParametersFileWebhookSecretsEscaping: azd pastes NIGHTSHIFT_WEBHOOK_SECRETS verbatim
// into a JSON string, so the value documented in docs/deploy.md (quotes escaped as \")
// yields a parameters file that parses and a webhookSecrets string that is the JSON object;
// the unescaped JSON would break the file (which is why the docs escape it).
func TestParametersFileWebhookSecretsEscaping(t *testing.T) {
	raw := readFile(t, mainParamFile)
	parse := func(env map[string]string) (string, error) {
		var doc struct {
			Parameters map[string]struct {
				Value any `json:"value"`
			} `json:"parameters"`
		}
		if err := json.Unmarshal(azdSubstitute(raw, env), &doc); err != nil {
			return "", err
		}
		v, _ := doc.Parameters["webhookSecrets"].Value.(string)
		return v, nil
	}
	escaped := `{\"https://hooks.example.com\": [\"new\", \"old\"]}`
	got, err := parse(map[string]string{"NIGHTSHIFT_WEBHOOK_SECRETS": escaped})
	if err != nil {
		t.Fatalf("escaped value: parameters file does not parse: %v", err)
	}
	var secrets map[string][]string
	if err := json.Unmarshal([]byte(got), &secrets); err != nil || len(secrets["https://hooks.example.com"]) != 2 {
		t.Errorf("webhookSecrets = %q (%v), want the JSON object with two secrets", got, err)
	}
	if _, err := parse(map[string]string{"NIGHTSHIFT_WEBHOOK_SECRETS": `{"https://hooks.example.com": "s"}`}); err == nil {
		t.Error("unescaped JSON value: the parameters file still parses; docs/deploy.md's escaping advice would be wrong")
	}
	if got, err := parse(nil); err != nil || got != "" {
		t.Errorf("unset: webhookSecrets = %q, %v; want empty (the template then stores {})", got, err)
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
