// Package update mirrors the v1beta1 result shape behind the removed `.Updated` field.
package update

import (
	"oracle/types"
	v1 "oracle/update"
)

type ObjectIdentifier = v1.ObjectIdentifier

type ImageRef interface {
	String() string
	Identifier() string
	Repository() string
	Registry() string
	Name() string
	Policy() types.NamespacedName
}

type Ref struct {
	Str, Ident, Repo, Reg, Full string
}

func (r Ref) String() string     { return r.Str }
func (r Ref) Identifier() string { return r.Ident }
func (r Ref) Repository() string { return r.Repo }
func (r Ref) Registry() string   { return r.Reg }
func (r Ref) Name() string       { return r.Full }

type imageRef struct {
	Ref
	policy types.NamespacedName
}

func (i imageRef) Policy() types.NamespacedName { return i.policy }

func NewImageRef(r Ref, policy types.NamespacedName) ImageRef { return imageRef{r, policy} }

type FileResult struct {
	Objects map[ObjectIdentifier][]ImageRef
}

type Result struct {
	Files map[string]FileResult
}

func (r Result) Images() []ImageRef {
	seen := map[ImageRef]struct{}{}
	var result []ImageRef
	for _, f := range v1.SortedFiles(r.Files) {
		objs := r.Files[f].Objects
		for _, o := range v1.SortedObjects(objs) {
			for _, img := range objs[o] {
				if _, ok := seen[img]; !ok {
					seen[img] = struct{}{}
					result = append(result, img)
				}
			}
		}
	}
	return result
}

func (r Result) Objects() map[ObjectIdentifier][]ImageRef {
	result := map[ObjectIdentifier][]ImageRef{}
	for _, f := range v1.SortedFiles(r.Files) {
		objs := r.Files[f].Objects
		for _, o := range v1.SortedObjects(objs) {
			result[o] = append(result[o], objs[o]...)
		}
	}
	return result
}
