package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// fluxTypes are the Flux kinds the examples use, with the Go types of their pinned API modules.
var fluxTypes = map[schema.GroupVersionKind]func() interface{}{
	kustomizev1.GroupVersion.WithKind("Kustomization"): func() interface{} { return &kustomizev1.Kustomization{} },
	helmv2.GroupVersion.WithKind("HelmRelease"):        func() interface{} { return &helmv2.HelmRelease{} },
	sourcev1.GroupVersion.WithKind("GitRepository"):    func() interface{} { return &sourcev1.GitRepository{} },
	sourcev1.GroupVersion.WithKind("HelmRepository"):   func() interface{} { return &sourcev1.HelmRepository{} },
	sourcev1.GroupVersion.WithKind("OCIRepository"):    func() interface{} { return &sourcev1.OCIRepository{} },
}

type manifest struct {
	File     string                 `json:"file"`
	Kind     string                 `json:"kind"`
	Checked  bool                   `json:"checked"` // decoded strictly into the Flux API type
	Error    string                 `json:"error,omitempty"`
	Document map[string]interface{} `json:"document"`
}

// checkManifests decodes every YAML document of the files; a Flux kind is decoded strictly into its
// API type (an unknown field or a wrong type is an error), as the API server's schema would refuse it.
func checkManifests(files []string) ([]manifest, error) {
	var out []manifest
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := reader.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			var generic map[string]interface{}
			if err := yaml.Unmarshal(doc, &generic); err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			if generic == nil {
				continue
			}
			m := manifest{File: file, Document: generic}
			apiVersion, _ := generic["apiVersion"].(string)
			m.Kind, _ = generic["kind"].(string)
			gvk := schema.FromAPIVersionAndKind(apiVersion, m.Kind)
			if newType, ok := fluxTypes[gvk]; ok {
				m.Checked = true
				if err := yaml.UnmarshalStrict(doc, newType()); err != nil {
					m.Error = err.Error()
				}
			}
			out = append(out, m)
		}
	}
	return out, nil
}
