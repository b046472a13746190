package ring

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

// BenchmarkHandoff is the ring's queue against the buffered channel it replaces (the reference),
// with one pusher and one popper, and four pushers and one popper (several source partitions
// feeding one worker). benchmarks/micro.sh puts the two side by side: benchstat -col /impl.
func BenchmarkHandoff(b *testing.B) {
	for _, pushers := range []int{1, 4} {
		b.Run(fmt.Sprintf("pushers=%d/impl=ring", pushers), func(b *testing.B) { benchQueue(b, pushers) })
		b.Run(fmt.Sprintf("pushers=%d/impl=channel", pushers), func(b *testing.B) { benchChan(b, pushers) })
	}
}

func benchQueue(b *testing.B, pushers int) {
	q := NewQueue[*int](4096, 1<<40)
	ctx := context.Background()
	v := new(int)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / pushers
	for p := 0; p < pushers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				_ = q.Push(ctx, v, 1)
			}
		}()
	}
	for i := 0; i < per*pushers; i++ {
		_, _ = q.Pop(ctx)
	}
	wg.Wait()
}

func benchChan(b *testing.B, pushers int) {
	ch := make(chan *int, 4096)
	v := new(int)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / pushers
	for p := 0; p < pushers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				ch <- v
			}
		}()
	}
	for i := 0; i < per*pushers; i++ {
		<-ch
	}
	wg.Wait()
}
