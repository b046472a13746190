//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap/zaptest"

	"github.com/kmirror/kmirror/pkg/produce"
)

// TestProduceTxnExpiredIDTakenByAnotherFencesTheFirst is the zombie case of an expired
// transactional id, on a real broker that expires idle ids after 3 s: producer A commits, idles
// until the id expired, producer B takes the id (the coordinator gives it a new producer id),
// then A wakes and writes. A's first request meets a coordinator that does not know its producer
// id; taking the id again with the producer id and epoch A held must be refused as fenced (it
// would otherwise fence B), so A fails for good and nothing of its transaction is committed,
// while B commits. Read read_committed, the partition holds A's first transaction and B's, once,
// in order.
func TestProduceTxnExpiredIDTakenByAnotherFencesTheFirst(t *testing.T) {
	props := filepath.Join(t.TempDir(), "expiry.properties")
	if err := os.WriteFile(props, []byte("transactional.id.expiration.ms=3000\n"+
		"transaction.remove.expired.transaction.cleanup.interval.ms=1000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	us := startCluster(t, "us", "--extra-config", props)
	const topic, id = "txnexpiry", "txnexpiry-0"
	us.createTopic(t, topic, 1, 1, nil)
	sc := sarama.NewConfig()
	sc.Version = sarama.V3_6_0_0
	cfg := produce.Config{Addrs: us.bootstrap, Net: sc, Linger: 5 * time.Millisecond, BatchBytes: 1 << 20,
		BatchRecords: 10_000, MaxBatchBytes: 1 << 20, DeliveryTimeout: 30 * time.Second, RetryBackoff: 100 * time.Millisecond,
		Log: zaptest.NewLogger(t)}
	nop := func([]*sarama.ProducerMessage, error) {}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	write := func(tx *produce.Txn, from, n int) error {
		if err := tx.Begin(); err != nil {
			return err
		}
		for i := from; i < from+n; i++ {
			if err := tx.Produce(&sarama.ProducerMessage{Topic: topic, Partition: 0, Value: sarama.StringEncoder(txnValue(0, i))}); err != nil {
				_ = tx.Abort(ctx)
				return err
			}
		}
		return tx.Commit(ctx, nil)
	}

	a, err := produce.NewTxn(cfg, produce.TxnConfig{ID: id, Timeout: time.Minute}, nop)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := write(a, 0, 100); err != nil {
		t.Fatalf("producer A's first transaction: %v", err)
	}
	pidA, epochA := a.ProducerID()
	time.Sleep(10 * time.Second) // the id expires

	b, err := produce.NewTxn(cfg, produce.TxnConfig{ID: id, Timeout: time.Minute}, nop)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	pidB, epochB := b.ProducerID()
	t.Logf("producer A held %d/%d; after the expiry B took the id as %d/%d", pidA, epochA, pidB, epochB)
	if pidB == pidA {
		t.Fatalf("B took the id under A's producer id %d: the id did not expire, the test tests nothing", pidA)
	}

	err = write(a, 100, 100) // the zombie wakes
	t.Logf("the zombie's transaction: %v (renewals %d)", err, a.Renewals())
	if !errors.Is(err, produce.ErrTxnFatal) || !errors.Is(err, sarama.ErrProducerFenced) {
		t.Fatalf("the zombie's transaction after another producer took the expired id: %v, want ErrTxnFatal and PRODUCER_FENCED", err)
	}
	if err := write(b, 100, 100); err != nil {
		t.Fatalf("producer B's transaction after the zombie tried: %v", err)
	}
	checkReadCommitted(t, us, topic, 1, 200)
}
