// luahealth runs an Argo CD resource health check the way Argo CD runs one (argo-cd
// util/lua/lua.go): gopher-lua (Lua 5.1), only the package, base and table libraries opened for a
// user-supplied script (no string, math, io or os), the resource as the global `obj` decoded from
// JSON (numbers are float64), a one-second limit, and the returned table's status and message.
//
// Usage: luahealth HEALTH.lua CASES.json, where CASES.json is a list of
// {"name", "object", "status", "message"?}. Prints one line a failure and "N passed, M failed".
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

type testCase struct {
	Name    string          `json:"name"`
	Object  json.RawMessage `json:"object"`
	Status  string          `json:"status"`
	Message *string         `json:"message"`
}

// health runs the script on one object and returns Argo CD's status and message.
func health(script string, object []byte) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	obj, err := luajson.Decode(l, object)
	if err != nil {
		return "", "", fmt.Errorf("object: %w", err)
	}
	l.SetGlobal("obj", obj)
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return "", "", fmt.Errorf("the script returned %s, not a table", l.Get(-1).Type())
	}
	status := lua.LVAsString(table.RawGetString("status"))
	switch status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
	default:
		status = "Unknown" // what Argo CD makes of any other value
	}
	return status, lua.LVAsString(table.RawGetString("message")), nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: luahealth HEALTH.lua CASES.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var cases []testCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		fmt.Fprintln(os.Stderr, os.Args[2], err)
		os.Exit(2)
	}
	failed := 0
	for _, c := range cases {
		status, message, err := health(string(script), c.Object)
		switch {
		case err != nil:
			fmt.Printf("FAIL %s: %v\n", c.Name, err)
			failed++
		case status != c.Status:
			fmt.Printf("FAIL %s: want %s, got %s (%s)\n", c.Name, c.Status, status, message)
			failed++
		case c.Message != nil && message != *c.Message:
			fmt.Printf("FAIL %s: want message %q, got %q\n", c.Name, *c.Message, message)
			failed++
		}
	}
	fmt.Printf("%d passed, %d failed\n", len(cases)-failed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}
