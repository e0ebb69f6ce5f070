// Package controllers mirrors the v1beta1 TemplateData with the `.Updated` field.
package controllers

import (
	"oracle/legacy/update"
	"oracle/types"
)

type TemplateData struct {
	AutomationObject types.NamespacedName
	Updated          update.Result
}
