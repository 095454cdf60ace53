// Package infra holds nightshift's deployment (infra/bicep) and the offline tests that
// validate it without the Bicep CLI: every .bicep file is parsed with the tree-sitter Bicep
// grammar (a syntax gate), and structural policy checks over the syntax tree compare the
// template with the Go code (storage layout, app settings) and with the security baseline
// (no shared keys, TLS 1.2, least-privilege role assignments with container-scoped blob
// roles, Key Vault in RBAC mode with the webhook secrets as Key Vault references and a
// wrap/unwrap-only key-encryption key, diagnostic settings to Log Analytics, basic
// publishing credentials off, network rules from parameters, no Flex-deprecated settings).
// The package has no non-test code; run `go test ./infra/`.
package infra
