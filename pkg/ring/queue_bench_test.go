package ring

import (
	"context"
	"sync"
	"testing"
)

// The ring's queue against the buffered channel it replaces, one pusher and one popper, and
// four pushers and one popper (several source partitions feeding one worker).

func BenchmarkQueueSPSC(b *testing.B) { benchQueue(b, 1) }
func BenchmarkQueueMPSC(b *testing.B) { benchQueue(b, 4) }
func BenchmarkChanSPSC(b *testing.B)  { benchChan(b, 1) }
func BenchmarkChanMPSC(b *testing.B)  { benchChan(b, 4) }

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
