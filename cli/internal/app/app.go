package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"flotilla.dev/cli/internal/client"
	"flotilla.dev/cli/internal/config"
	"flotilla.dev/cli/internal/exitcode"
	"flotilla.dev/cli/internal/output"
)

// Env is what the command runs with: its streams, environment and clock.
type Env struct {
	// Stdin, Stdout and Stderr are the command's standard streams.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment; nil: os.Getenv.
	Getenv func(string) string
	// Dialer replaces the TCP dialer (tests); nil dials TCP.
	Dialer client.Dialer
	// Terminal reports whether w is a terminal and its width; nil: checks
	// the file descriptor of an *os.File.
	Terminal func(w io.Writer) (bool, int)
	// Version is the build's version.
	Version string
}

// app is one run of the command: the environment, the global flags, and
// the client once connected.
type app struct {
	env    Env
	flags  config.Flags
	out    string
	format output.Format
	client *client.Client
}

// Main runs the command with args and returns its exit code.
func Main(ctx context.Context, args []string, env Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if env.Terminal == nil {
		env.Terminal = fdTerminal
	}
	a := &app{env: env}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if a.client != nil {
		_ = a.client.Close()
	}
	if err == nil {
		return 0
	}
	code := exitcode.ForError(err)
	var silent *silentError
	if !errors.As(err, &silent) {
		fmt.Fprintln(env.Stderr, "flotilla: "+ErrorLine(err))
	}
	return int(code)
}

// silentError carries an exit code whose reason was printed already (a
// rollout's final state and evidence).
type silentError struct{ code exitcode.Code }

func (e *silentError) Error() string { return e.code.String() }

// exit ends the command with code without printing an error line.
func exit(code exitcode.Code) error {
	if code == exitcode.OK {
		return nil
	}
	return exitcode.With(code, &silentError{code: code})
}

// ErrorLine is an error on one line: a server's status as its code and
// message (the message names the field at fault), anything else as its
// text, newlines folded.
func ErrorLine(err error) string {
	var msg string
	if s, ok := status.FromError(unwrapCoded(err)); ok && s.Code() != 0 {
		msg = fmt.Sprintf("%s: %s", s.Code(), s.Message())
	} else {
		msg = err.Error()
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(msg, "\n", " ")), " ")
}

func unwrapCoded(err error) error {
	var c *exitcode.Coded
	if errors.As(err, &c) {
		return c.Err
	}
	return err
}

func fdTerminal(w io.Writer) (bool, int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false, 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		width = 0
	}
	return true, width
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "flotilla",
		Short: "Drive a Flotilla control plane: agents, commands, services, rollouts",
		Long: `flotilla talks to a Flotilla control plane over gRPC (TLS).

Connection: flags, then FLOTILLA_ADDRESS, FLOTILLA_TOKEN and FLOTILLA_CA,
then the named context of the config file (flotilla context --help).
Output: tables by default; -o json (one API message per line) or -o yaml.
Exit codes: docs/cli.md (0 only when the new version is live).`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		PersistentPreRunE: func(*cobra.Command, []string) error { return a.prepare() },
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.flags.Context, "context", "", "the config file's context to use (env FLOTILLA_CONTEXT)")
	pf.StringVar(&a.flags.Address, "address", "", "control plane host:port (env FLOTILLA_ADDRESS; default "+config.DefaultAddress+")")
	pf.StringVar(&a.flags.CAFile, "ca", "", "CA certificate file of the control plane (env FLOTILLA_CA)")
	pf.StringVar(&a.flags.TokenFile, "token-file", "", "file holding the API token (env FLOTILLA_TOKEN holds the token itself)")
	pf.StringVar(&a.flags.CertFile, "cert", "", "operator certificate file (with --key), instead of a token")
	pf.StringVar(&a.flags.KeyFile, "key", "", "the operator certificate's key file")
	pf.StringVarP(&a.out, "output", "o", "table", "output: table, json or yaml")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.With(exitcode.Invalid, err) })
	root.AddCommand(a.agentsCommand(), a.cmdCommand(), a.serviceCommand(), a.rolloutCommand(),
		a.backupCommand(), a.notifyCommand(), a.tokensCommand(), a.auditCommand(), a.contextCommand(), a.versionCommand(), a.completionCommand())
	argsInvalid(root)
	return root
}

// argsInvalid makes the argument checks of c and its subcommands end with
// the invalid-input code.
func argsInvalid(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		// A group: its help, or an unknown subcommand named.
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usage("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			return exitcode.With(exitcode.Invalid, check(cmd, args))
		}
	}
	for _, sub := range c.Commands() {
		argsInvalid(sub)
	}
}

// prepare checks the global flags.
func (a *app) prepare() error {
	f, err := output.ParseFormat(a.out)
	if err != nil {
		return exitcode.With(exitcode.Invalid, err)
	}
	a.format = f
	return nil
}

// connect resolves the connection and prepares the client.
func (a *app) connect() (*client.Client, error) {
	if a.client != nil {
		return a.client, nil
	}
	path, err := config.Path(a.env.Getenv)
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, err)
	}
	file, err := config.Load(path)
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, err)
	}
	conn, err := config.Resolve(a.flags, file, a.env.Getenv)
	if err != nil {
		return nil, exitcode.With(exitcode.Invalid, err)
	}
	c, err := client.New(conn, client.Options{UserAgent: "flotilla/" + a.env.Version, Dialer: a.env.Dialer})
	if err != nil {
		return nil, err
	}
	a.client = c
	return c, nil
}

// callTimeout bounds one unary call.
const callTimeout = 30 * time.Second

// call runs a unary call under callTimeout.
func call[Req, Resp any](ctx context.Context, fn func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return fn(ctx, req)
}

// usage is an invalid-input error.
func usage(format string, args ...any) error {
	return exitcode.Withf(exitcode.Invalid, format, args...)
}

// progress is where progress goes: stderr when stdout is for a script,
// stdout otherwise.
func (a *app) progress() io.Writer {
	if a.format.Machine() {
		return a.env.Stderr
	}
	return a.env.Stdout
}
