// Package update mirrors Flux's internal/update result types (v1), with kyaml's
// ResourceIdentifier embedded as in Flux.
package update

import "sort"

type TypeMeta struct {
	APIVersion string
	Kind       string
}

type NameMeta struct {
	Name      string
	Namespace string
}

type ResourceIdentifier struct {
	TypeMeta
	NameMeta
}

type ObjectIdentifier struct {
	ResourceIdentifier
}

type Change struct {
	OldValue string
	NewValue string
	Setter   string
}

type ObjectChanges map[ObjectIdentifier][]Change

type Result struct {
	FileChanges map[string]ObjectChanges
}

func Less(a, b ObjectIdentifier) bool {
	x := []string{a.APIVersion, a.Kind, a.Name, a.Namespace}
	y := []string{b.APIVersion, b.Kind, b.Name, b.Namespace}
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return false
}

func SortedFiles[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func SortedObjects[V any](m map[ObjectIdentifier]V) []ObjectIdentifier {
	var ks []ObjectIdentifier
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return Less(ks[i], ks[j]) })
	return ks
}

// Changes is Flux's method, visiting maps in sorted order so that the oracle is deterministic.
func (r Result) Changes() []Change {
	seen := map[Change]struct{}{}
	var result []Change
	for _, f := range SortedFiles(r.FileChanges) {
		oc := r.FileChanges[f]
		for _, o := range SortedObjects(oc) {
			for _, c := range oc[o] {
				if _, ok := seen[c]; !ok {
					seen[c] = struct{}{}
					result = append(result, c)
				}
			}
		}
	}
	return result
}

// Objects merges changes per object across files (sorted file order).
func (r Result) Objects() ObjectChanges {
	result := ObjectChanges{}
	for _, f := range SortedFiles(r.FileChanges) {
		oc := r.FileChanges[f]
		for _, o := range SortedObjects(oc) {
			result[o] = append(result[o], oc[o]...)
		}
	}
	return result
}
