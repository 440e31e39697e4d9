// gitops-health computes what Flux and Argo CD make of synapse-scim objects, with their own libraries.
//
// It reads a JSON array of Kubernetes objects (as the API server returns them) on stdin and writes a
// JSON array with, for each object:
//
//   - "kstatus": sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the library Flux's health checks
//     (kustomize-controller, helm-controller with wait) use for kinds they have no rules of their own for;
//   - "lua": the Argo CD health script of the object's group and kind (<health-dir>/<group>/<Kind>/health.lua)
//     run under github.com/yuin/gopher-lua the way Argo CD's util/lua runs a health customisation from
//     argocd-cm: a Lua state without the standard libraries, then only package, base and table opened
//     (and a reduced os), the object as the global `obj`, a 1 s deadline, the returned table read as
//     {status, message}, an unknown status turned into Unknown;
//   - "argocd": what Argo CD shows: gitops-engine's GetResourceHealth runs no script for an object being
//     deleted ("Progressing", "Pending deletion"), and a script error becomes "Unknown".
//
// With -check-manifests it decodes YAML files instead, each Flux kind strictly into the Go type of its
// pinned API module (kustomize-controller, helm-controller, source-controller): the examples' check.
//
// The objects are decoded the way client-go decodes them for both tools (unstructured JSON: integers as
// int64), and handed to Lua as Argo does (maps as tables, lists as sequences, numbers as numbers).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type health struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type result struct {
	Name    string  `json:"name"`
	Kstatus health  `json:"kstatus"`
	Lua     *health `json:"lua,omitempty"`
	LuaErr  string  `json:"luaError,omitempty"`
	ArgoCD  health  `json:"argocd"`
}

// The health codes Argo CD accepts from a script (gitops-engine's HealthStatusCode).
var argoCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	healthDir := flag.String("health-dir", "health/argocd", "the Argo CD health scripts: <dir>/<group>/<Kind>/health.lua")
	check := flag.Bool("check-manifests", false, "instead: decode the YAML files named as arguments, Flux kinds strictly into their API types")
	flag.Parse()
	if *check {
		found, err := checkManifests(flag.Args())
		if err != nil {
			fail(err)
		}
		if err := json.NewEncoder(os.Stdout).Encode(found); err != nil {
			fail(err)
		}
		return
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		fail(fmt.Errorf("stdin: a JSON array of objects: %w", err))
	}
	out := make([]result, 0, len(items))
	for i, item := range items {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(item); err != nil {
			fail(fmt.Errorf("object %d: %w", i, err))
		}
		out = append(out, evaluate(u, *healthDir))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gitops-health:", err)
	os.Exit(1)
}

func evaluate(u *unstructured.Unstructured, healthDir string) result {
	r := result{Name: u.GetName()}
	ks, err := status.Compute(u)
	if err != nil {
		r.Kstatus = health{Status: "Error", Message: err.Error()}
	} else {
		r.Kstatus = health{Status: string(ks.Status), Message: ks.Message}
	}

	gvk := u.GroupVersionKind()
	script, err := os.ReadFile(filepath.Join(healthDir, gvk.Group, gvk.Kind, "health.lua"))
	if err != nil {
		fail(err)
	}
	hs, luaErr := runHealthLua(u.Object, string(script))
	if luaErr != nil {
		r.LuaErr = luaErr.Error()
	} else {
		r.Lua = hs
	}
	switch {
	case u.GetDeletionTimestamp() != nil:
		r.ArgoCD = health{Status: "Progressing", Message: "Pending deletion"}
	case luaErr != nil:
		r.ArgoCD = health{Status: "Unknown", Message: luaErr.Error()}
	default:
		r.ArgoCD = *hs
	}
	return r
}

func runHealthLua(obj map[string]interface{}, script string) (*health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	// Argo CD adds an os library of its own with only time and date; no script of ours uses it, and a
	// script that called anything else of os (or string, math, io) fails here as it would there.
	osLib := l.NewTable()
	osLib.RawSetString("time", l.NewFunction(func(s *lua.LState) int {
		s.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}))
	l.SetGlobal(lua.OsLibName, osLib)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	table, ok := ret.(*lua.LTable)
	if !ok {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	hs := &health{}
	for key, field := range map[string]*string{"status": &hs.Status, "message": &hs.Message} {
		switch v := table.RawGetString(key).(type) {
		case lua.LString:
			*field = string(v)
		case *lua.LNilType:
		default:
			return nil, errors.New("health." + key + " is a " + v.Type().String() + ", not a string")
		}
	}
	if !argoCodes[hs.Status] {
		return &health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return hs, nil
}

// toLua hands a decoded object to Lua as Argo CD does: objects as tables keyed by name, arrays as
// sequences, every number (int64 from the decoder, or float64) as a Lua number, null as nil.
func toLua(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []interface{}:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]interface{}:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
