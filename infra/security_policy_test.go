package infra

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	sitter "github.com/tree-sitter/go-tree-sitter"
)

// Security policies of the deployment (Key Vault, diagnostic settings, publishing
// credentials, network), in addition to the storage and role-assignment policies of
// policy_test.go. They run in TestPoliciesHoldForTemplate and
// TestPoliciesCatchWeakenedTemplates like the others; TestPoliciesFailOnPreviousTemplate
// shows that each of them fails on the template as it was before they were written.

// previousBicep is main.bicep as it was before the Key Vault, diagnostics, publishing and
// network hardening (Storage Blob Data Owner on the account, a plain webhook secret). A
// fixture, not a template: the .txt suffix keeps it out of `bicep build` and the syntax gate.
const previousBicep = "testdata/main.before-issue10.bicep.txt"

// referencesIn lists the identifiers an expression mentions.
func (m *bicepModel) referencesIn(n *sitter.Node) []string {
	var out []string
	walk(n, func(c *sitter.Node) {
		if c.Kind() == "identifier" {
			out = append(out, m.text(c))
		}
	})
	return out
}

// mentionsParam returns the first parameter an expression mentions for which ok holds.
func (m *bicepModel) mentionsParam(n *sitter.Node, ok func(bicepParam) bool) *bicepParam {
	for _, ref := range m.referencesIn(n) {
		if p := m.param(ref); p != nil && ok(*p) {
			return p
		}
	}
	return nil
}

// childrenOf returns the resources of a type declared with `parent: <symbol>`.
func (m *bicepModel) childrenOf(typ, symbol string) []*bicepResource {
	var out []*bicepResource
	for _, r := range m.ofType(typ) {
		if m.text(m.prop(r.body, "parent")) == symbol {
			out = append(out, r)
		}
	}
	return out
}

var keyVaultReferenceRE = regexp.MustCompile(`^'@Microsoft\.KeyVault\(SecretUri=\$\{([A-Za-z_][A-Za-z0-9_]*)\.properties\.secretUri(WithVersion)?\}\)'$`)

// checkKeyVault: one vault in RBAC mode with soft delete and purge protection; an RSA
// key-encryption key (3072 or 4096 bits) usable only for wrapKey/unwrapKey, whose URI is
// NIGHTSHIFT_ENCRYPTION_KEY_URL (conditional only on a bool parameter that defaults to true);
// NIGHTSHIFT_WEBHOOK_SECRETS a Key Vault reference to a secret of that vault holding a
// @secure() parameter; the site resolves references with the user-assigned identity.
func checkKeyVault(m *bicepModel, _ expectations) []string {
	id, out := theIdentity(m)
	if id == "" {
		return out
	}
	vaults := m.ofType(typeVault)
	if len(vaults) != 1 {
		return append(out, fmt.Sprintf("want exactly one %s, found %d", typeVault, len(vaults)))
	}
	v := vaults[0]
	for _, w := range []struct{ key, want string }{
		{"enableRbacAuthorization", "true"},
		{"enableSoftDelete", "true"},
		{"enablePurgeProtection", "true"},
	} {
		if got := m.text(m.path(v.body, "properties", w.key)); got != w.want {
			out = append(out, fmt.Sprintf("vault %s: properties.%s is %q, want %s", v.symbol, w.key, got, w.want))
		}
	}
	if v.condition != nil {
		out = append(out, "vault "+v.symbol+" is conditional")
	}
	if ap := m.path(v.body, "properties", "accessPolicies"); ap != nil && m.text(ap) != "[]" {
		out = append(out, "vault "+v.symbol+" has access policies: with RBAC authorization data access is granted by role assignments only")
	}
	out = append(out, checkKEK(m, v)...)

	settings, _ := appSettings(m)
	ref, ok := settings[settingWebhookSecrets]
	if !ok {
		return append(out, "app setting "+settingWebhookSecrets+" is not set")
	}
	mm := keyVaultReferenceRE.FindStringSubmatch(m.text(ref))
	if mm == nil {
		return append(out, fmt.Sprintf("app setting %s is %s, want a Key Vault reference '@Microsoft.KeyVault(SecretUri=${<secret>.properties.secretUri})'", settingWebhookSecrets, m.text(ref)))
	}
	secret := m.bySymbol(mm[1])
	switch {
	case secret == nil || !strings.EqualFold(secret.typ, typeVaultSecret):
		out = append(out, fmt.Sprintf("app setting %s references %s, which is not a %s", settingWebhookSecrets, mm[1], typeVaultSecret))
	case m.text(m.prop(secret.body, "parent")) != v.symbol:
		out = append(out, fmt.Sprintf("secret %s is not in vault %s", secret.symbol, v.symbol))
	case m.mentionsParam(m.path(secret.body, "properties", "value"), func(p bicepParam) bool { return p.secure }) == nil:
		out = append(out, fmt.Sprintf("secret %s: properties.value %s does not come from a @secure() parameter", secret.symbol, m.text(m.path(secret.body, "properties", "value"))))
	}
	for _, s := range m.ofType(typeSite) {
		if got := m.text(m.path(s.body, "properties", "keyVaultReferenceIdentity")); got != id+".id" {
			out = append(out, fmt.Sprintf("site %s: properties.keyVaultReferenceIdentity is %q, want %s.id (Key Vault references otherwise use a system-assigned identity)", s.symbol, got, id))
		}
	}
	return out
}

// checkKEK checks the key-encryption key of vault v and NIGHTSHIFT_ENCRYPTION_KEY_URL.
func checkKEK(m *bicepModel, v *bicepResource) []string {
	keys := m.childrenOf(typeVaultKey, v.symbol)
	if len(keys) != 1 {
		return []string{fmt.Sprintf("want exactly one %s in vault %s (the key-encryption key), found %d", typeVaultKey, v.symbol, len(keys))}
	}
	k := keys[0]
	var out []string
	if kty := m.text(m.path(k.body, "properties", "kty")); kty != "'RSA'" && kty != "'RSA-HSM'" {
		out = append(out, fmt.Sprintf("key %s: properties.kty is %q, want 'RSA' or 'RSA-HSM'", k.symbol, kty))
	}
	if size := m.text(m.path(k.body, "properties", "keySize")); size != "3072" && size != "4096" {
		out = append(out, fmt.Sprintf("key %s: properties.keySize is %q, want 3072 or 4096", k.symbol, size))
	}
	ops, _ := m.evalList(m.path(k.body, "properties", "keyOps"))
	slices.Sort(ops)
	if !slices.Equal(ops, []string{"unwrapKey", "wrapKey"}) {
		out = append(out, fmt.Sprintf("key %s: properties.keyOps is %v, want exactly wrapKey and unwrapKey", k.symbol, ops))
	}
	if k.condition != nil {
		cond := k.condition
		for cond.Kind() == "parenthesized_expression" && cond.NamedChildCount() == 1 {
			cond = cond.NamedChild(0)
		}
		p := m.param(m.text(cond))
		if p == nil || p.typ != "bool" || p.def != "true" {
			out = append(out, fmt.Sprintf("key %s is conditional on %q, want a bool parameter that defaults to true", k.symbol, m.text(k.condition)))
		}
	}
	settings, _ := appSettings(m)
	url, ok := settings[settingEncryptionKeyURL]
	switch got := m.text(url); {
	case !ok:
		out = append(out, "app setting "+settingEncryptionKeyURL+" is not set")
	case got != k.symbol+".properties.keyUri" && got != k.symbol+".properties.keyUriWithVersion":
		out = append(out, fmt.Sprintf("app setting %s is %s, want %s.properties.keyUri", settingEncryptionKeyURL, got, k.symbol))
	}
	return out
}

// diagnosticTarget is a resource type whose diagnostic settings must reach Log Analytics.
type diagnosticTarget struct {
	what, typ       string
	logs, metrics   []string
	categoryGroupOK bool // whether categoryGroup 'allLogs' may stand in for the log categories
}

var diagnosticTargets = []diagnosticTarget{
	{"storage blob service", typeBlobService, []string{"StorageRead", "StorageWrite", "StorageDelete"}, []string{"Transaction"}, true},
	{"storage queue service", typeQueueService, []string{"StorageRead", "StorageWrite", "StorageDelete"}, []string{"Transaction"}, true},
	{"function app", typeSite, []string{"FunctionAppLogs"}, nil, true},
	{"key vault", typeVault, []string{"AuditEvent"}, nil, true},
}

// enabledCategories lists the categories (and "group:<name>" category groups) of a logs or
// metrics array whose enabled is true; the array and its elements may be variables.
func (m *bicepModel) enabledCategories(n *sitter.Node) []string {
	arr := m.resolve(n)
	var out []string
	for i := uint(0); arr != nil && arr.Kind() == "array" && i < arr.NamedChildCount(); i++ {
		el := m.resolve(arr.NamedChild(i))
		if m.text(m.prop(el, "enabled")) != "true" {
			continue
		}
		if c, ok := m.eval(m.prop(el, "category")); ok {
			out = append(out, c)
		}
		if g, ok := m.eval(m.prop(el, "categoryGroup")); ok {
			out = append(out, "group:"+g)
		}
	}
	return out
}

// checkDiagnostics: the storage blob and queue services, the function app and the vault
// each have an unconditional diagnostic setting to the Log Analytics workspace with the
// listed categories enabled.
func checkDiagnostics(m *bicepModel, _ expectations) []string {
	ws := m.ofType(typeWorkspace)
	if len(ws) != 1 {
		return []string{fmt.Sprintf("want one %s, found %d", typeWorkspace, len(ws))}
	}
	var out []string
	for _, tgt := range diagnosticTargets {
		resources := m.ofType(tgt.typ)
		if len(resources) == 0 {
			out = append(out, fmt.Sprintf("no %s (%s) to send diagnostics from", tgt.what, tgt.typ))
		}
		for _, r := range resources {
			var logs, metrics []string
			found := false
			for _, d := range m.ofType(typeDiagnosticSettings) {
				if m.scopeOf(d) != r || d.condition != nil || d.loop != nil || m.text(m.path(d.body, "properties", "workspaceId")) != ws[0].symbol+".id" {
					continue
				}
				found = true
				logs = append(logs, m.enabledCategories(m.path(d.body, "properties", "logs"))...)
				metrics = append(metrics, m.enabledCategories(m.path(d.body, "properties", "metrics"))...)
			}
			if !found {
				out = append(out, fmt.Sprintf("%s %s has no unconditional diagnostic setting with workspaceId %s.id", tgt.what, r.symbol, ws[0].symbol))
				continue
			}
			allLogs := tgt.categoryGroupOK && slices.Contains(logs, "group:allLogs")
			for _, c := range tgt.logs {
				if !allLogs && !slices.Contains(logs, c) {
					out = append(out, fmt.Sprintf("%s %s: diagnostic log category %s is not enabled", tgt.what, r.symbol, c))
				}
			}
			for _, c := range tgt.metrics {
				if !slices.Contains(metrics, c) && !slices.Contains(metrics, "AllMetrics") {
					out = append(out, fmt.Sprintf("%s %s: diagnostic metric category %s is not enabled", tgt.what, r.symbol, c))
				}
			}
		}
	}
	return out
}

// checkPublishingCredentials: basic (user name/password) publishing is off for FTP and SCM
// on every site, unconditionally.
func checkPublishingCredentials(m *bicepModel, _ expectations) []string {
	var out []string
	for _, s := range m.ofType(typeSite) {
		for _, name := range []string{"ftp", "scm"} {
			found := false
			for _, p := range m.childrenOf(typePublishingPolicy, s.symbol) {
				if n, _ := m.eval(m.prop(p.body, "name")); n == name && p.condition == nil && m.text(m.path(p.body, "properties", "allow")) == "false" {
					found = true
				}
			}
			if !found {
				out = append(out, fmt.Sprintf("site %s: no unconditional %s %q with properties.allow false (basic-auth publishing stays on)", s.symbol, typePublishingPolicy, name))
			}
		}
	}
	return out
}

// checkNetwork: the storage account's and the vault's networkAcls take defaultAction from
// a parameter allowed to be Allow or Deny and ipRules from an array parameter, bypass
// AzureServices; optional private endpoints for blob, queue and the vault are created when
// a subnet parameter is set; the site can be VNet-integrated (needed with Deny).
func checkNetwork(m *bicepModel, _ expectations) []string {
	var out []string
	var guarded []*bicepResource
	guarded = append(guarded, m.ofType(typeStorageAccount)...)
	guarded = append(guarded, m.ofType(typeVault)...)
	if len(guarded) == 0 {
		return []string{"no storage account or vault"}
	}
	for _, r := range guarded {
		acls := m.path(r.body, "properties", "networkAcls")
		action := m.text(m.prop(acls, "defaultAction"))
		if p := m.param(action); p == nil || !strings.Contains(p.decorators, "'Allow'") || !strings.Contains(p.decorators, "'Deny'") {
			out = append(out, fmt.Sprintf("%s: properties.networkAcls.defaultAction is %q, want a parameter @allowed(['Allow', 'Deny'])", r.symbol, action))
		}
		if got := m.text(m.prop(acls, "bypass")); got != "'AzureServices'" {
			out = append(out, fmt.Sprintf("%s: properties.networkAcls.bypass is %q, want 'AzureServices'", r.symbol, got))
		}
		if m.mentionsParam(m.resolve(m.prop(acls, "ipRules")), func(p bicepParam) bool { return p.typ == "array" }) == nil {
			out = append(out, fmt.Sprintf("%s: properties.networkAcls.ipRules is %q, want rules built from an array parameter", r.symbol, m.text(m.prop(acls, "ipRules"))))
		}
	}
	storageSym := ""
	if st := m.ofType(typeStorageAccount); len(st) == 1 {
		storageSym = st[0].symbol
	}
	vaultSym := ""
	if v := m.ofType(typeVault); len(v) == 1 {
		vaultSym = v[0].symbol
	}
	for _, want := range []struct{ group, service string }{{"blob", storageSym}, {"queue", storageSym}, {"vault", vaultSym}} {
		if !slices.ContainsFunc(m.ofType(typePrivateEndpoint), func(pe *bicepResource) bool { return m.isOptionalPrivateEndpoint(pe, want.group, want.service) }) {
			out = append(out, fmt.Sprintf("no optional %s for %q on %q, conditional on a subnet parameter that is its subnet.id", typePrivateEndpoint, want.group, want.service))
		}
	}
	for _, s := range m.ofType(typeSite) {
		if m.mentionsParam(m.path(s.body, "properties", "virtualNetworkSubnetId"), func(p bicepParam) bool { return p.typ == "string" }) == nil {
			out = append(out, fmt.Sprintf("site %s: properties.virtualNetworkSubnetId does not come from a parameter (with defaultAction Deny the app could not reach its storage)", s.symbol))
		}
	}
	return out
}

// isOptionalPrivateEndpoint reports whether pe connects group of resource service, and is
// created only when a string parameter is set that is also its subnet id.
func (m *bicepModel) isOptionalPrivateEndpoint(pe *bicepResource, group, service string) bool {
	if service == "" || pe.condition == nil {
		return false
	}
	subnet := m.mentionsParam(pe.condition, func(p bicepParam) bool { return p.typ == "string" })
	if subnet == nil || m.text(m.path(pe.body, "properties", "subnet", "id")) != subnet.name {
		return false
	}
	conns := m.path(pe.body, "properties", "privateLinkServiceConnections")
	for i := uint(0); conns != nil && i < conns.NamedChildCount(); i++ {
		c := conns.NamedChild(i)
		groups, _ := m.evalList(m.path(c, "properties", "groupIds"))
		if m.text(m.path(c, "properties", "privateLinkServiceId")) == service+".id" && slices.Contains(groups, group) {
			return true
		}
	}
	return false
}

// TestPoliciesFailOnPreviousTemplate runs the policies on the template as it was before
// the security hardening and requires each new assertion to report it: Blob Data Owner,
// no container-scoped Blob Data Contributor, no Key Vault or its roles, a plain webhook
// secret setting, no diagnostic settings, basic publishing on, a fixed network default.
// (Queue Data Contributor was already assigned there; that check is older and passes.)
func TestPoliciesFailOnPreviousTemplate(t *testing.T) {
	e := loadExpectations(t)
	m, problems := parseBicep(t, previousBicep, readFile(t, previousBicep))
	if len(problems) > 0 {
		t.Fatalf("syntax: %v", problems)
	}
	violations := runPolicies(m, e)
	t.Logf("%d violations on the previous template:\n  %s", len(violations), strings.Join(violations, "\n  "))
	want := []struct{ policy, substr string }{
		{"role assignments", "Storage Blob Data Owner (" + roleStorageBlobDataOwner + ") appears"},
		{"role assignments", "grants a blob data role (" + roleStorageBlobDataOwner + ") to the app on \"storage\""},
		{"role assignments", "no role assignment of Storage Blob Data Contributor"},
		{"role assignments", "no role assignment of Storage Blob Delegator"},
		{"role assignments", "no role assignment of Key Vault Crypto User"},
		{"role assignments", "no role assignment of Key Vault Secrets User"},
		{"key vault", "want exactly one " + typeVault},
		{"app settings", "app setting " + settingWebhookSecret + " is set, but it is retired"},
		{"app settings", "holds the @secure() parameter webhookSecret in plain text"},
		{"app settings", "app setting " + settingWebhookSecrets + " is not set"},
		{"diagnostic settings", "storage blob service blobService has no unconditional diagnostic setting"},
		{"diagnostic settings", "storage queue service queueService has no unconditional diagnostic setting"},
		{"diagnostic settings", "function app functionApp has no unconditional diagnostic setting"},
		{"diagnostic settings", "no key vault"},
		{"publishing credentials", `"ftp"`},
		{"publishing credentials", `"scm"`},
		{"network", "storage: properties.networkAcls.defaultAction is \"'Allow'\""},
		{"network", "storage: properties.networkAcls.ipRules"},
		{"network", `for "blob"`},
		{"network", `for "queue"`},
		{"network", `for "vault"`},
	}
	for _, w := range want {
		if !slices.ContainsFunc(violations, func(v string) bool { return strings.HasPrefix(v, w.policy+": ") && strings.Contains(v, w.substr) }) {
			t.Errorf("policy %q did not report %q on the previous template; all violations:\n  %s", w.policy, w.substr, strings.Join(violations, "\n  "))
		}
	}
}
