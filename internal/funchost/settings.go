package funchost

import (
	"encoding/json"
	"os"
)

// LoadLocalSettings reads the "Values" of a local.settings.json file, the app settings
// Functions Core Tools uses locally. Encrypted files are not supported.
func LoadLocalSettings(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		IsEncrypted bool              `json:"IsEncrypted"`
		Values      map[string]string `json:"Values"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, &ConfigError{File: path, Problem: "not a local.settings.json document ({\"Values\": {\"Name\": \"value\", …}}): " + err.Error()}
	}
	if doc.IsEncrypted {
		return nil, &ConfigError{File: path, Field: "IsEncrypted", Problem: "true: encrypted settings files are not supported by the local host"}
	}
	if doc.Values == nil {
		return nil, &ConfigError{File: path, Field: "Values", Problem: "missing"}
	}
	return doc.Values, nil
}
