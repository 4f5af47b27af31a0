/* PETSc/SLEPc compatibility shim: the one place that papers over version differences. */
#ifndef NTK_PETSC_H
#define NTK_PETSC_H
#include <petscsys.h>

/* PETSc 3.18 has no PETSC_SUCCESS (added in 3.19). */
#ifndef PETSC_SUCCESS
#define PETSC_SUCCESS ((PetscErrorCode)0)
#endif

#endif
