package main

import (
	"testing"

	"github.com/kmirror/kmirror/benchmarks/bare/baretest"
)

func TestCopiesEachRecordToTheSamePartitionOfANewTargetTopic(t *testing.T) {
	baretest.CopiesEachRecordToTheSamePartitionOfANewTargetTopic(t, run)
}

func TestRefusesATargetTopicWithFewerPartitions(t *testing.T) {
	baretest.RefusesATargetTopicWithFewerPartitions(t, run)
}
