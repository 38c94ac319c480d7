// Open MPI for Swift.
//
// Open MPI defines its handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) as macros that take the address
// of incomplete global structs; Swift's importer cannot import such macros. Each one is re-exported here
// as a `static inline` function with the `cmpi_` prefix, marked _Nonnull so Swift sees a non-optional
// handle. These can go once Swift imports address-of macros (or if we move to the MPI ABI headers).
#pragma once
#include <mpi.h>

static inline MPI_Comm _Nonnull cmpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm _Nonnull cmpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype _Nonnull cmpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype _Nonnull cmpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype _Nonnull cmpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype _Nonnull cmpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype _Nonnull cmpi_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Datatype _Nonnull cmpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op _Nonnull cmpi_op_sum(void) { return MPI_SUM; }
static inline MPI_Op _Nonnull cmpi_op_max(void) { return MPI_MAX; }
static inline MPI_Op _Nonnull cmpi_op_min(void) { return MPI_MIN; }
static inline void * _Nonnull cmpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status * _Nonnull cmpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request _Nonnull cmpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Datatype _Nonnull cmpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Status * _Nullable cmpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Errhandler _Nonnull cmpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Info _Nonnull cmpi_info_null(void) { return MPI_INFO_NULL; }
static inline MPI_Win _Nonnull cmpi_win_null(void) { return MPI_WIN_NULL; }
static inline int cmpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int cmpi_mode_nocheck(void) { return MPI_MODE_NOCHECK; }
