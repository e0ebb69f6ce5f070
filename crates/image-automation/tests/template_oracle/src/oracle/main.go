// The differential-test oracle: renders each case with Go's text/template and Sprig's
// HermeticTxtFuncMap (as Flux does) and prints the results as JSON.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"

	"oracle/legacy/controllers"
	legacy "oracle/legacy/update"
	"oracle/source"
	"oracle/types"
	"oracle/update"
)

type Image struct {
	String, Identifier, Repository, Registry, Name, PolicyNamespace, PolicyName string
}

type FixChange struct {
	File, APIVersion, Kind, ObjName, ObjNamespace string
	OldValue, NewValue, Setter                    string
	Image                                         *Image
}

type Fixture struct {
	Namespace, Name string
	Values          map[string]string
	Changes         []FixChange
	JSON            json.RawMessage
}

type Case struct {
	Name, Fixture, Shape, Template string
}

type Input struct {
	Fixtures map[string]Fixture
	Cases    []Case
}

type Output struct {
	Name   string  `json:"name"`
	Output *string `json:"output,omitempty"`
	Error  *string `json:"error,omitempty"`
	Parse  bool    `json:"parse,omitempty"`
}

func oid(c FixChange) update.ObjectIdentifier {
	var o update.ObjectIdentifier
	o.APIVersion, o.Kind, o.Name, o.Namespace = c.APIVersion, c.Kind, c.ObjName, c.ObjNamespace
	return o
}

// normalize turns json.Number into int (when integral) or float64, as the Rust side does.
func normalize(v interface{}) interface{} {
	switch x := v.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil && !strings.ContainsAny(string(x), ".eE") {
			return int(i)
		}
		f, _ := x.Float64()
		return f
	case []interface{}:
		for i := range x {
			x[i] = normalize(x[i])
		}
		return x
	case map[string]interface{}:
		for k := range x {
			x[k] = normalize(x[k])
		}
		return x
	}
	return v
}

func data(f Fixture, shape string) interface{} {
	auto := types.NamespacedName{Namespace: f.Namespace, Name: f.Name}
	switch shape {
	case "v1":
		r := update.Result{FileChanges: map[string]update.ObjectChanges{}}
		for _, c := range f.Changes {
			if r.FileChanges[c.File] == nil {
				r.FileChanges[c.File] = update.ObjectChanges{}
			}
			o := oid(c)
			r.FileChanges[c.File][o] = append(r.FileChanges[c.File][o], update.Change{OldValue: c.OldValue, NewValue: c.NewValue, Setter: c.Setter})
		}
		return source.TemplateData{AutomationObject: auto, Changed: r, Values: f.Values}
	case "legacy":
		r := legacy.Result{Files: map[string]legacy.FileResult{}}
		for _, c := range f.Changes {
			if c.Image == nil {
				continue
			}
			fr, ok := r.Files[c.File]
			if !ok {
				fr = legacy.FileResult{Objects: map[legacy.ObjectIdentifier][]legacy.ImageRef{}}
				r.Files[c.File] = fr
			}
			i := c.Image
			ref := legacy.NewImageRef(legacy.Ref{Str: i.String, Ident: i.Identifier, Repo: i.Repository, Reg: i.Registry, Full: i.Name},
				types.NamespacedName{Namespace: i.PolicyNamespace, Name: i.PolicyName})
			fr.Objects[oid(c)] = append(fr.Objects[oid(c)], ref)
		}
		return controllers.TemplateData{AutomationObject: auto, Updated: r}
	default:
		if len(f.JSON) == 0 {
			return nil
		}
		d := json.NewDecoder(bytes.NewReader(f.JSON))
		d.UseNumber()
		var v interface{}
		if err := d.Decode(&v); err != nil {
			panic(err)
		}
		return normalize(v)
	}
}

func main() {
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	var in Input
	if err := json.Unmarshal(raw, &in); err != nil {
		panic(err)
	}
	var outs []Output
	for _, c := range in.Cases {
		o := Output{Name: c.Name}
		t, err := template.New("commit message").Funcs(sprig.HermeticTxtFuncMap()).Parse(c.Template)
		if err != nil {
			s := err.Error()
			o.Error, o.Parse = &s, true
		} else {
			var b strings.Builder
			if err := t.Execute(&b, data(in.Fixtures[c.Fixture], c.Shape)); err != nil {
				s := err.Error()
				o.Error = &s
			} else {
				s := b.String()
				o.Output = &s
			}
		}
		outs = append(outs, o)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", " ")
	if err := enc.Encode(outs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
