package app

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"flotilla.dev/cli/internal/config"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print the flotilla command's version", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(a.env.Stdout, "flotilla %s (%s, %s/%s)\n", a.env.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}

func (a *app) completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "Print the shell completion script",
		Long:      "Print the completion script for bash, zsh or fish, e.g.\n  source <(flotilla completion bash)",
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.env.Stdout, true)
			case "zsh":
				return root.GenZshCompletion(a.env.Stdout)
			default:
				return root.GenFishCompletion(a.env.Stdout, true)
			}
		},
	}
}

func (a *app) contextCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "context",
		Short: "Named control planes in the config file",
		Long: `A context names a control plane's address, its CA file and a credential
(a token file, or an operator certificate and key). They live in
$FLOTILLA_CONFIG, else $XDG_CONFIG_HOME/flotilla/config.yaml, else
~/.config/flotilla/config.yaml. Flags and FLOTILLA_* variables override
the context's settings; --context or FLOTILLA_CONTEXT picks another one.`,
	}
	c.AddCommand(a.contextSetCommand(), a.contextUseCommand(), a.contextListCommand())
	return c
}

// editConfig loads the config file, lets edit change it, and saves it.
func (a *app) editConfig(edit func(*config.File) error) error {
	path, err := config.Path(a.env.Getenv)
	if err != nil {
		return usage("%v", err)
	}
	f, err := config.Load(path)
	if err != nil {
		return usage("%v", err)
	}
	if err := edit(&f); err != nil {
		return err
	}
	return config.Save(path, f)
}

func (a *app) contextSetCommand() *cobra.Command {
	var ctx config.Context
	c := &cobra.Command{
		Use: "set NAME --address HOST:PORT [--ca FILE] [--token-file FILE | --cert FILE --key FILE]", Short: "Create or replace a context",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx.Address, ctx.CAFile, ctx.TokenFile = a.flags.Address, a.flags.CAFile, a.flags.TokenFile
			ctx.CertFile, ctx.KeyFile = a.flags.CertFile, a.flags.KeyFile
			if ctx.Address == "" {
				return usage("--address: required")
			}
			if ctx.TokenFile != "" && ctx.CertFile != "" {
				return usage("credentials: give --token-file or --cert and --key, not both")
			}
			if (ctx.CertFile == "") != (ctx.KeyFile == "") {
				return usage("--cert and --key: give both or neither")
			}
			return a.editConfig(func(f *config.File) error {
				if f.Contexts == nil {
					f.Contexts = map[string]config.Context{}
				}
				f.Contexts[args[0]] = ctx
				if f.CurrentContext == "" {
					f.CurrentContext = args[0]
				}
				_, err := fmt.Fprintf(a.env.Stdout, "context %s saved\n", args[0])
				return err
			})
		},
	}
	c.Flags().StringVar(&ctx.ServerName, "server-name", "", "the name to check in the server's certificate (default: the address's host)")
	return c
}

func (a *app) contextUseCommand() *cobra.Command {
	return &cobra.Command{
		Use: "use NAME", Short: "Make NAME the current context", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.editConfig(func(f *config.File) error {
				if err := f.Use(args[0]); err != nil {
					return usage("%v", err)
				}
				_, err := fmt.Fprintf(a.env.Stdout, "current context: %s\n", args[0])
				return err
			})
		},
	}
}

func (a *app) contextListCommand() *cobra.Command {
	return &cobra.Command{
		Use: "ls", Short: "List the contexts; * marks the current one", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, err := config.Path(a.env.Getenv)
			if err != nil {
				return usage("%v", err)
			}
			f, err := config.Load(path)
			if err != nil {
				return usage("%v", err)
			}
			for _, n := range f.Names() {
				mark := " "
				if n == f.CurrentContext {
					mark = "*"
				}
				c := f.Contexts[n]
				fmt.Fprintf(a.env.Stdout, "%s %-16s %s\n", mark, n, c.Address)
			}
			return nil
		},
	}
}
