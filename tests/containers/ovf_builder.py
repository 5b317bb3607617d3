"""OVF descriptors written by hand from DMTF DSP0243 (not with vdinspect's code), for the
tests that wrap qemu-img's images into packages with the real ``tar``."""

from __future__ import annotations

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"


def ovf(disks, *, name="appliance", cpus=2, memory_mib=1024, nics=("E1000",)) -> str:
    """``disks``: (href, capacity bytes, format URI, extra File attributes) tuples."""
    files, disk_rows, drives = [], [], []
    for i, (href, capacity, fmt, extra) in enumerate(disks, 1):
        attrs = " ".join(f'ovf:{k}="{v}"' for k, v in extra.items())
        files.append(f'    <File ovf:href="{href}" ovf:id="file{i}" {attrs}/>')
        # capacity in MiB units when it divides, as ovftool writes it
        if capacity % (1 << 20) == 0:
            cap = f'ovf:capacity="{capacity >> 20}" ovf:capacityAllocationUnits="byte * 2^20"'
        else:
            cap = f'ovf:capacity="{capacity}"'
        disk_rows.append(f'    <Disk {cap} ovf:diskId="vmdisk{i}" ovf:fileRef="file{i}" '
                         f'ovf:format="{fmt}"/>')
        drives.append(f"""      <Item>
        <rasd:AddressOnParent>{i - 1}</rasd:AddressOnParent>
        <rasd:ElementName>disk{i}</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk{i}</rasd:HostResource>
        <rasd:InstanceID>{10 + i}</rasd:InstanceID>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>""")
    nic_items = "\n".join(f"""      <Item>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>ethernet{k}</rasd:ElementName>
        <rasd:InstanceID>{30 + k}</rasd:InstanceID>
        <rasd:ResourceSubType>{sub}</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>""" for k, sub in enumerate(nics))
    nl = "\n"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="{OVF_NS}" xmlns:ovf="{OVF_NS}" xmlns:rasd="{RASD}" xmlns:vssd="{VSSD}" ovf:version="1.0">
  <References>
{nl.join(files)}
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
{nl.join(disk_rows)}
  </DiskSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="96">
      <Info>The kind of installed guest operating system</Info>
      <Description>Debian GNU/Linux 12 (64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>{memory_mib}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mib}</rasd:VirtualQuantity>
      </Item>
{nic_items}
{nl.join(drives)}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""
