package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// ServerConfig configures the HTTP endpoint.
type ServerConfig struct {
	// Listen is host:port.
	Listen string
	// Pprof serves /debug/pprof.
	Pprof bool
}

// Server serves /metrics, /healthz, /readyz and optionally /debug/pprof.
type Server struct {
	cfg      ServerConfig
	gatherer prometheus.Gatherer
	ready    func() error
	log      *zap.Logger
	ln       net.Listener
}

// NewServer binds the listener at once (so a bad or busy address fails at start, and the actual
// port is known) and returns the server; Run serves it.
func NewServer(cfg ServerConfig, gatherer prometheus.Gatherer, ready func() error, log *zap.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("telemetry.listen %q: %w", cfg.Listen, err)
	}
	return &Server{cfg: cfg, gatherer: gatherer, ready: ready, log: log, ln: ln}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler returns the endpoint's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if s.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Run serves until ctx ends, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("serving /metrics, /healthz and /readyz", zap.String("addr", s.Addr()), zap.Bool("pprof", s.cfg.Pprof))
	select {
	case err := <-errc:
		return fmt.Errorf("telemetry endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("telemetry endpoint shutdown: %w", err)
	}
	return nil
}
