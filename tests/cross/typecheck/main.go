// Command typecheck type-checks packages, their tests included, for another
// GOOS/GOARCH without that platform's C toolchain: go vet and go build need
// a C compiler for the target once cgo is on (runtime/cgo, the SQLite
// driver), and with cgo off the driver's Go API disappears. Here go list
// picks each package's files exactly as a cgo build for the target would,
// and go/types checks them with FakeImportC: every Go declaration, call and
// assignment is checked for the target, only the C.* names are not (C.x has
// an invalid type, so an error about a value of invalid type in a file that
// imports "C" is fake cgo's, not the code's, and is counted, not reported).
//
//	go run ./tests/cross/typecheck -goos darwin -goarch arm64 ./...
//
// It checks the listed packages and every package they import, standard
// library and modules included, and exits 1 if any has an error.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

type listed struct {
	ImportPath string
	Dir        string
	Name       string
	Standard   bool
	GoFiles    []string
	CgoFiles   []string
	ImportMap  map[string]string
	Error      *struct{ Err string }
}

func main() {
	goos := flag.String("goos", "darwin", "target GOOS")
	goarch := flag.String("goarch", "arm64", "target GOARCH")
	tests := flag.Bool("tests", true, "check the packages' tests too")
	flag.Parse()
	n, fakeC, err := check(*goos, *goarch, *tests, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "typecheck:", err)
		os.Exit(1)
	}
	what := "packages (tests included)"
	if !*tests {
		what = "packages (tests not included)"
	}
	fmt.Printf("typecheck: %d %s type-check for %s/%s with cgo (C names unchecked: %d errors about C-typed values set aside)\n", n, what, *goos, *goarch, fakeC)
}

func check(goos, goarch string, tests bool, patterns []string) (n, fakeC int, err error) {
	args := []string{"list", "-e", "-deps", "-json"}
	if tests {
		args = append(args, "-test")
	}
	args = append(args, patterns...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("go list: %w: %s", err, stderr.Bytes())
	}
	sizes := types.SizesFor("gc", goarch)
	if sizes == nil {
		return 0, 0, fmt.Errorf("no sizes for GOARCH %s", goarch)
	}
	fset := token.NewFileSet()
	done := map[string]*types.Package{"unsafe": types.Unsafe}
	var failed []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listed
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return n, fakeC, fmt.Errorf("go list output: %w", err)
		}
		if p.ImportPath == "unsafe" {
			continue
		}
		if p.Error != nil {
			return n, fakeC, fmt.Errorf("%s: %s", p.ImportPath, p.Error.Err)
		}
		// The generated test main lives in the build cache; it holds no code of ours.
		if p.Name == "main" && strings.HasSuffix(p.ImportPath, ".test") {
			continue
		}
		var files []*ast.File
		usesC := map[string]bool{} // file name -> imports "C"
		for _, name := range append(append([]string{}, p.GoFiles...), p.CgoFiles...) {
			name = filepath.Join(p.Dir, name)
			f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
			if err != nil {
				return n, fakeC, err
			}
			for _, im := range f.Imports {
				usesC[name] = usesC[name] || im.Path.Value == `"C"`
			}
			files = append(files, f)
		}
		var errs []string
		conf := types.Config{
			FakeImportC: true,
			Sizes:       sizes,
			Importer:    importer{done, p.ImportMap},
			Error: func(err error) {
				if te, ok := err.(types.Error); ok && usesC[te.Fset.Position(te.Pos).Filename] && strings.Contains(te.Msg, "invalid type") {
					fakeC++
					return
				}
				if len(errs) < 10 {
					errs = append(errs, err.Error())
				}
			},
		}
		path, _, _ := strings.Cut(p.ImportPath, " ")
		pkg, _ := conf.Check(path, fset, files, nil)
		if len(errs) > 0 {
			failed = append(failed, fmt.Sprintf("%s:\n  %s", p.ImportPath, strings.Join(errs, "\n  ")))
		}
		done[p.ImportPath] = pkg
		n++
	}
	if len(failed) > 0 {
		return n, fakeC, fmt.Errorf("%d packages do not type-check for %s/%s:\n%s", len(failed), goos, goarch, strings.Join(failed, "\n"))
	}
	return n, fakeC, nil
}

// importer hands out packages already checked; go list -deps lists every
// package after its imports.
type importer struct {
	done      map[string]*types.Package
	importMap map[string]string
}

func (im importer) Import(path string) (*types.Package, error) {
	if p, ok := im.importMap[path]; ok {
		path = p
	}
	if pkg, ok := im.done[path]; ok {
		return pkg, nil
	}
	return nil, fmt.Errorf("package %s not checked yet", path)
}
