// Command convpca compresses the Conv layers of an ONNX model with the PCA of their
// activations on calibration data, and evaluates models.
//
// Exit codes: 0 success, 1 failure, 2 bad usage.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes, decided here only.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// usageError marks an error in how the command was called.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run runs the command line args and returns the exit code; errors go to stderr as one line.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	missing := ""
	app.CommandNotFound = func(c *cli.Context, name string) { missing = name }
	err := app.Run(flagsFirst(app, args))
	if err == nil && missing != "" {
		err = usagef("no command %q (see convpca --help)", missing)
	}
	if err == nil {
		return exitOK
	}
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	fmt.Fprintf(stderr, "convpca: %s\n", msg)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFail
}

// commands holds the constructors of the subcommands; each subcommand's file registers its
// own in an init function, so adding a command touches no other file.
var commands []func() *cli.Command

func newApp(stdout, stderr io.Writer) *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} }
	var cmds []*cli.Command
	for _, mk := range commands {
		c := mk()
		cmds = append(cmds, c)
		c.OnUsageError = onUsage
	}
	return &cli.App{
		Name:  "convpca",
		Usage: "compress the Conv layers of an ONNX model with the PCA of their activations",
		Description: "Exit codes: 0 success, 1 failure (bad model or data, runtime error), 2 bad usage.\n" +
			"The onnxruntime library is found by --ort-lib, then $CONVPCA_ORT_LIB, then where `make setup`\n" +
			"installs it (~/.local/share/convpca/lib), then the system's library folders.",
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // run decides exit codes
		OnUsageError:    onUsage,
		Commands:        cmds,
	}
}

// runtimeFlags are the flags of every command that runs a model.
func runtimeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "max-samples", Usage: "use at most `N` samples of the data (0: all)"},
		&cli.IntFlag{Name: "batch", Value: 64, Usage: "samples per onnxruntime run"},
		&cli.StringFlag{Name: "provider", Value: "auto", Usage: "onnxruntime provider: auto (CUDA if usable, else CPU), cpu or cuda"},
		&cli.StringFlag{Name: "ort-lib", Usage: "`PATH` of libonnxruntime.so.1 (default: $CONVPCA_ORT_LIB, then the install folder, then system folders)"},
		&cli.IntFlag{Name: "threads", Usage: "onnxruntime intra-op threads (0: onnxruntime's choice)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print no warnings"},
	}
}

// flagsFirst moves a command's positional arguments after its flags, so that
// `convpca compress MODEL --out X` parses as users expect (urfave/cli stops at the first
// positional argument).
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) < 3 {
		return args
	}
	cmd := app.Command(args[1])
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			takesValue[name] = !isBool
		}
	}
	out := append([]string{}, args[:2]...)
	var pos []string
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") && takesValue[name] && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}
