# Source this before running MPI work as root (CI, containers). Harmless otherwise.
# Open MPI refuses root without these; the refused mpiexec exits at once, which hpcfutures
# reports as a WorkerCrashedError carrying mpiexec's own message.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PRTE_ALLOW_RUN_AS_ROOT=1 PRTE_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's fabric probing costs ~1 s per start on a machine without a fast network;
# ob1 over shared memory and TCP is what a single machine needs. Do not copy this to a
# cluster with InfiniBand: there UCX is what you want.
export OMPI_MCA_pml="${OMPI_MCA_pml:-ob1}" OMPI_MCA_btl="${OMPI_MCA_btl:-^ofi,uct,openib}"
# quiet PMIx security plugin lookups of the PyPI wheel
export PMIX_MCA_psec="${PMIX_MCA_psec:-native}"
