// The shapes of the CSI messages as proto.ts decodes them (snake_case, enums by name, int64 as
// number, unset sub-messages as null). Only the fields llraid reads or writes are typed.

export type AccessModeName =
  | 'UNKNOWN'
  | 'SINGLE_NODE_WRITER'
  | 'SINGLE_NODE_READER_ONLY'
  | 'MULTI_NODE_READER_ONLY'
  | 'MULTI_NODE_SINGLE_WRITER'
  | 'MULTI_NODE_MULTI_WRITER'
  | 'SINGLE_NODE_SINGLE_WRITER'
  | 'SINGLE_NODE_MULTI_WRITER';

export interface VolumeCapability {
  block?: Record<string, never> | null;
  mount?: { fs_type: string; mount_flags: string[]; volume_mount_group: string } | null;
  access_type?: 'block' | 'mount';
  access_mode: { mode: AccessModeName } | null;
}

export interface CapacityRange {
  required_bytes: number;
  limit_bytes: number;
}

export interface Topology {
  segments: Record<string, string>;
}

export interface Volume {
  capacity_bytes: number;
  volume_id: string;
  volume_context: Record<string, string>;
  accessible_topology: Topology[];
}

export interface VolumeCondition {
  abnormal: boolean;
  message: string;
}

/** A oneof: exactly one of the two is set (proto.ts decodes the other as absent or null). */
export interface VolumeContentSource {
  type?: 'snapshot' | 'volume';
  snapshot?: { snapshot_id: string } | null;
  volume?: { volume_id: string } | null;
}

export interface CreateVolumeRequest {
  name: string;
  capacity_range: CapacityRange | null;
  volume_capabilities: VolumeCapability[];
  parameters: Record<string, string>;
  volume_content_source: VolumeContentSource | null;
  accessibility_requirements: { requisite: Topology[]; preferred: Topology[] } | null;
}

export interface NodeStageVolumeRequest {
  volume_id: string;
  staging_target_path: string;
  volume_capability: VolumeCapability | null;
  volume_context: Record<string, string>;
}

export interface NodePublishVolumeRequest {
  volume_id: string;
  staging_target_path: string;
  target_path: string;
  volume_capability: VolumeCapability | null;
  readonly: boolean;
  volume_context: Record<string, string>;
}
