{
  "targets": [
    {
      "target_name": "segdist_native",
      "sources": ["ring_allreduce.c"],
      "cflags": ["-O3", "-std=gnu11", "-Wall", "-Wno-sign-compare"]
    }
  ]
}
