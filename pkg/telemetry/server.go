package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// ServerConfig configures the HTTP endpoint (the telemetry section of the configuration).
type ServerConfig struct {
	// Listen is host:port (":9464", "127.0.0.1:0" for a free port).
	Listen string
	// Pprof serves /debug/pprof/ (CPU, heap, goroutine profiles, execution traces). Off by
	// default: a profile costs CPU and shows internals, so it is opted into.
	Pprof bool
	// Started, when set, answers /startupz: nil once the process has started its work (its
	// configuration loaded, the mirror running), whatever the clusters do. Nil means started.
	Started func() error
	// Routes are further handlers by path (the mirror's /offsets/translate).
	Routes map[string]http.Handler
	// About describes Routes by path, one line each, for the index at /.
	About map[string]string
}

// shutdownGrace bounds how long Run waits for scrapes in progress once ctx ends.
const shutdownGrace = 5 * time.Second

// Server is the telemetry HTTP endpoint:
//
//	/metrics        Prometheus text or OpenMetrics (content negotiation), from the gatherer
//	/healthz        200 while the process runs
//	/startupz       200 once the process has started its work (not waiting for the clusters),
//	                else 503: what a startup probe should ask
//	/readyz         200 when the readiness check returns nil, else 503 and the reason
//	/               an index of these endpoints (text)
//	...             ServerConfig.Routes
//	/debug/pprof/*  only with ServerConfig.Pprof
type Server struct {
	cfg      ServerConfig
	gatherer prometheus.Gatherer
	ready    func() error
	log      *zap.Logger
	ln       net.Listener
}

// NewServer binds the listener at once, so a bad or busy address fails at start and the actual
// port is known (Addr), and returns the server; Run serves it. gatherer is the registry the
// metrics were registered on (a *prometheus.Registry), never the global one. ready reports why the
// process is not ready, nil when it is; a nil ready means always ready. A nil log logs nothing.
func NewServer(cfg ServerConfig, gatherer prometheus.Gatherer, ready func() error, log *zap.Logger) (*Server, error) {
	if cfg.Listen == "" {
		return nil, errors.New("telemetry.listen is empty: want host:port, or leave the endpoint out")
	}
	if gatherer == nil {
		return nil, errors.New("telemetry: NewServer needs the metrics registry")
	}
	if ready == nil {
		ready = func() error { return nil }
	}
	if log == nil {
		log = zap.NewNop()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("telemetry.listen %q: %w", cfg.Listen, err)
	}
	return &Server{cfg: cfg, gatherer: gatherer, ready: ready, log: log, ln: ln}, nil
}

// Addr is the address the server listens on (with the actual port when Listen asked for port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Handler returns the endpoint's routes, for tests and for embedding in another mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		// A collector that fails (a sarama registry in a bad state) must not cost the scrape of
		// everything else: serve what was gathered and log the error.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      zapPrintln{s.log},
		Timeout:       30 * time.Second,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/startupz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.cfg.Started != nil {
			if err := s.cfg.Started(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintf(w, "not started: %v\n", err)
				return
			}
		}
		_, _ = w.Write([]byte("started\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	for path, h := range s.cfg.Routes {
		mux.Handle(path, h)
	}
	mux.HandleFunc("/{$}", s.index)
	if s.cfg.Pprof {
		// pprof.Index also serves the named profiles (heap, goroutine, allocs, block, mutex…).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// index lists the endpoints, so a person who opens the address in a browser or with curl finds
// the rest.
func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	about := map[string]string{
		"/metrics":  "Prometheus metrics (text or OpenMetrics)",
		"/healthz":  "200 while the process runs",
		"/startupz": "200 once kmirror has started its work, whether or not the clusters answer",
		"/readyz":   "200 when mirroring; else 503 and what is missing",
	}
	for path := range s.cfg.Routes {
		about[path] = s.cfg.About[path]
	}
	if s.cfg.Pprof {
		about["/debug/pprof/"] = "Go profiles (telemetry.pprof)"
	}
	paths := make([]string, 0, len(about))
	for p := range about {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintln(w, "kmirror telemetry endpoint")
	for _, p := range paths {
		_, _ = fmt.Fprintf(w, "  %-20s %s\n", p, about[p])
	}
}

// Run serves until ctx ends, then shuts down gracefully: it stops accepting, lets requests in
// progress finish (at most shutdownGrace, then cuts them off) and returns nil. It returns an error
// only if serving failed. Call it once.
func (s *Server) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: /debug/pprof/profile and /trace stream for as long as asked.
		IdleTimeout: 2 * time.Minute,
		ErrorLog:    zap.NewStdLog(s.log),
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("telemetry endpoint serving", zap.String("addr", s.Addr()), zap.Bool("pprof", s.cfg.Pprof))
	select {
	case err := <-errc:
		return fmt.Errorf("telemetry endpoint %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Past the grace period (a long pprof profile, a stuck scraper): cut the rest off.
		s.log.Warn("telemetry endpoint: requests still running at shutdown were cut off",
			zap.Duration("grace", shutdownGrace), zap.Error(err))
		_ = srv.Close()
	}
	<-errc // Serve has returned ErrServerClosed: its goroutine is done
	return nil
}

// zapPrintln adapts zap to promhttp.Logger.
type zapPrintln struct{ log *zap.Logger }

func (l zapPrintln) Println(v ...any) {
	l.log.Warn("serve /metrics", zap.String("error", fmt.Sprint(v...)))
}
