// Package types mirrors k8s.io/apimachinery/pkg/types.NamespacedName.
package types

type NamespacedName struct {
	Namespace string
	Name      string
}

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }
