package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kmirror/kmirror/pkg/config/reference"
)

// newConfigCommand prints what the configuration reference is generated from: the JSON Schema,
// the defaults as YAML and the Markdown reference, as built into this binary.
func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print the configuration's JSON Schema, defaults or reference",
	}
	print := func(use, short string, render func([]reference.Group) ([]byte, error)) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				secs, err := reference.Sections(reference.Embedded)
				if err != nil {
					return err
				}
				out, err := render(secs)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				if err != nil {
					return fmt.Errorf("write %s: %w", use, err)
				}
				return nil
			},
		}
	}
	cmd.AddCommand(
		print("schema", "Print the JSON Schema (draft 2020-12) of the configuration file, for editors", reference.Schema),
		print("defaults", "Print every setting's default as a commented YAML configuration", reference.DefaultsYAML),
		print("reference", "Print the configuration reference (docs/configuration.md)", func(secs []reference.Group) ([]byte, error) {
			return reference.Markdown(secs), nil
		}),
	)
	return cmd
}
