package tui

import (
	"context"
	"errors"
	"io"

	tea "charm.land/bubbletea/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Options is what Run needs besides the model's Config.
type Options struct {
	Config
	Source  flow.Source
	Request *flowv1.ObserveRequest
	// Input and Output default to the terminal.
	Input  io.Reader
	Output io.Writer
}

// Run shows the TUI until the user quits or ctx ends. The source runs in
// its own goroutine and hands batches to the program; when the source ends
// (a replay is complete), the screen stays until the user quits.
func Run(ctx context.Context, o Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithFPS(FPS)}
	if o.Input != nil {
		opts = append(opts, tea.WithInput(o.Input))
	}
	if o.Output != nil {
		opts = append(opts, tea.WithOutput(o.Output))
	}
	p := tea.NewProgram(New(o.Config), opts...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := o.Source.Observe(ctx, o.Request, func(b flow.Batch) error {
			p.Send(BatchMsg(b))
			return ctx.Err()
		})
		if ctx.Err() == nil {
			p.Send(SourceDoneMsg{Err: err})
		}
	}()
	_, err := p.Run()
	cancel()
	<-done
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil // interrupted from outside (signal): not an error
	}
	return err
}
