package fsm

import "testing"

func TestDraftsHoldBlobReferences(t *testing.T) {
	f := openTestFSM(t)
	lf := &logFeeder{t: t}
	d := Draft{ID: "d1", Owner: "a@acme.test", Subject: "hi", Attachments: []DraftAttachment{{Name: "x.pdf", Type: "application/pdf", BlobHash: "blobA", Size: 3}}, UpdatedAt: 1}
	applyOK(t, f, lf, &DraftPut{Draft: d})
	if ok, _ := f.Store().BlobReferenced("blobA"); !ok {
		t.Fatal("draft attachment unreferenced")
	}
	if _, ok, _ := f.Store().Draft("b@acme.test", "d1"); ok {
		t.Fatal("another owner sees the draft")
	}
	d.Attachments = nil
	applyOK(t, f, lf, &DraftPut{Draft: d})
	if ok, _ := f.Store().BlobReferenced("blobA"); ok {
		t.Fatal("removed attachment still referenced")
	}
	applyOK(t, f, lf, &DraftDelete{Owner: "a@acme.test", ID: "d1"})
	if ds, _ := f.Store().Drafts("a@acme.test"); len(ds) != 0 {
		t.Fatal("draft not deleted")
	}
}
