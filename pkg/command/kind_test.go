package command

import (
	"slices"
	"testing"

	flotillav1 "flotilla.dev/gen/flotilla/v1"
)

func TestKind(t *testing.T) {
	const none = "a command without a known kind"
	tests := []struct {
		spec     *flotillav1.CommandSpec
		kind     string
		kindText string
	}{
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Pull{}}, KindPull, KindPull},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restart{}}, KindRestart, KindRestart},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Backup{}}, KindBackup, KindBackup},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drain{}}, KindDrain, KindDrain},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Undrain{}}, KindUndrain, KindUndrain},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_BaseBackup{}}, KindBaseBackup, KindBaseBackup},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Prune{}}, KindPrune, KindPrune},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Restore{}}, KindRestore, KindRestore},
		{&flotillav1.CommandSpec{Kind: &flotillav1.CommandSpec_Drill{}}, KindDrill, KindDrill},
		{&flotillav1.CommandSpec{}, "", none},
		{nil, "", none},
	}
	for _, tt := range tests {
		if got := Kind(tt.spec); got != tt.kind {
			t.Errorf("Kind(%v) = %q, want %q", tt.spec, got, tt.kind)
		}
		if got := KindText(tt.spec); got != tt.kindText {
			t.Errorf("KindText(%v) = %q, want %q", tt.spec, got, tt.kindText)
		}
	}
}

// Every member of the oneof has a kind, and Kinds lists each of them once.
func TestKindsCoverTheOneof(t *testing.T) {
	oneof := (&flotillav1.CommandSpec{}).ProtoReflect().Descriptor().Oneofs().ByName("kind")
	if oneof == nil {
		t.Fatal("CommandSpec has no oneof kind")
	}
	kinds := Kinds()
	if n := oneof.Fields().Len(); len(kinds) != n {
		t.Fatalf("Kinds() lists %d kinds, the oneof has %d members", len(kinds), n)
	}
	for i := range oneof.Fields().Len() {
		name := string(oneof.Fields().Get(i).Name())
		if !slices.Contains(kinds, name) {
			t.Errorf("oneof member %q has no kind in Kinds()", name)
		}
	}
	kinds[0] = "changed"
	if Kinds()[0] != KindPull {
		t.Error("Kinds() returned a slice its caller can change for everyone")
	}
}
