package envelope

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of envelope v1, for producers in any language.
//
//go:embed envelope.schema.json
var Schema []byte
