// Package source mirrors Flux's internal/source.TemplateData.
package source

import (
	"oracle/types"
	"oracle/update"
)

type TemplateData struct {
	AutomationObject types.NamespacedName
	Changed          update.Result
	Values           map[string]string
}
